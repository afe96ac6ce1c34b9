"""Adversarial review of attention heads as cut units (pruning/graph: regroup, split_view,
attention, dims, param_trace): heads written in forms the zoo does not cover.

Each prunable case must cut whole heads: keep-all reproduces the model, and random plans
equal the original with the removed heads zeroed where each consumer reads them
(`decomposed_models.zeroed`, which finds the tapped argument of `addmm` too). Each frozen
case must freeze the heads rather than miscut them. Known bugs are in
test_graph_heads_review_bugs.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from pruning.data import Feeder
from pruning.graph import GraphAnalysis, analyse
from pruning.reader import read_program
from pruning.surgery import apply_plan
from tests.engine.decomposed_models import zeroed
from tests.zoo.programs import roundtrip

T, D = 5, 16
_SAVED: dict[str, bytes] = {}  # model name (+ ":dec") -> .pt2 bytes, each exported once


class Heads(nn.Module):
    """q, k, v and o projections with `view` into heads; subclasses write the attention."""

    def __init__(self, heads: int = 4, kv: int = 4, hd: int = 4, vhd: int = 4) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(D, heads * hd), nn.Linear(D, kv * hd)
        self.v, self.o = nn.Linear(D, kv * vhd), nn.Linear(heads * vhd, D)

    @staticmethod
    def split(z: torch.Tensor, heads: int) -> torch.Tensor:
        n, t, c = z.shape
        return z.view(n, t, heads, c // heads).transpose(1, 2)

    def out(self, y: torch.Tensor) -> torch.Tensor:
        n, h, t, d = y.shape
        return self.o(y.transpose(1, 2).reshape(n, t, h * d))

    def qkv(self, x: torch.Tensor, heads: int = 4, kv: int = 4) -> list[torch.Tensor]:
        return [self.split(self.q(x), heads), self.split(self.k(x), kv), self.split(self.v(x), kv)]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: object = 0.0) -> torch.Tensor:
    return ((q @ k.transpose(-1, -2)) + bias).softmax(-1) @ v  # type: ignore[operator]


class VHeadDim(Heads):  # v's head_dim (6) differs from q's and k's (4)
    def __init__(self) -> None:
        super().__init__(vhd=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(attend(*self.qkv(x)))


class Gate(Heads):  # a per-head gate from its own Linear(D, heads)
    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Linear(D, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.scaled_dot_product_attention(*self.qkv(x))
        return self.out(y * torch.sigmoid(self.g(x)).transpose(1, 2).unsqueeze(-1))


class SumHeadDim(Heads):  # the heads also summed over head_dim, read by another Linear
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Linear(4, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.scaled_dot_product_attention(*self.qkv(x))
        return self.out(y) + self.p(y.sum(-1).transpose(1, 2))


class Chunk(nn.Module):  # one fused qkv, chunk(3, dim=-1), then heads
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.o = nn.Linear(D, 3 * D), nn.Linear(D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (Heads.split(z, 4) for z in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).flatten(2))


class Falcon(nn.Module):  # fused qkv per kv group: 2 query heads, then k, then v
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.o = nn.Linear(D, 2 * 4 * 4), nn.Linear(16, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        z = self.qkv(x).view(n, t, 2, 4, 4)
        q = z[:, :, :, :2].reshape(n, t, 4, 4).transpose(1, 2)
        k, v = (z[:, :, :, i].transpose(1, 2) for i in (2, 3))
        k, v = (u[:, :, None].expand(n, 2, 2, t, 4).reshape(n, 4, t, 4) for u in (k, v))
        return self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, 16))


class MLA(nn.Module):  # q and k heads: two projections concatenated along head_dim
    def __init__(self) -> None:
        super().__init__()
        self.qn, self.qr, self.kn, self.kr = (nn.Linear(D, w) for w in (8, 4, 8, 4))
        self.v, self.o = nn.Linear(D, 12), nn.Linear(12, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.cat([Heads.split(self.qn(x), 2), Heads.split(self.qr(x), 2)], -1)
        k = torch.cat([Heads.split(self.kn(x), 2), Heads.split(self.kr(x), 2)], -1)
        y = F.scaled_dot_product_attention(q, k, Heads.split(self.v(x), 2))
        return self.o(y.transpose(1, 2).flatten(2))


class Primer(Heads):  # a depthwise conv over the tokens of q, k and v before the heads
    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.ModuleList(nn.Conv1d(16, 16, 3, padding=1, groups=16) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zs = [
            c(p(x).transpose(1, 2)).transpose(1, 2)
            for c, p in zip(self.dw, (self.q, self.k, self.v), strict=True)
        ]
        return self.out(F.scaled_dot_product_attention(*(self.split(z, 4) for z in zs)))


class GQABias(Heads):  # 6 query heads share 2 kv heads; a stored bias per query head
    def __init__(self) -> None:
        super().__init__(heads=6, kv=2)
        self.bias = nn.Parameter(torch.randn(6, T, T))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(x, 6, 2)
        k, v = (z[:, :, None].expand(n, 2, 3, t, 4).reshape(n, 6, t, 4) for z in (k, v))
        return self.out(attend(q, k, v, self.bias))


class RealFormer(nn.Module):  # layer 2's scores add layer 1's: their heads are one group
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.f = Heads(), Heads(), nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.a.qkv(x)
        s1 = q @ k.transpose(-1, -2)
        x = x + self.a.out(s1.softmax(-1) @ v)
        q, k, v = self.b.qkv(x)
        return self.f(x + self.b.out((q @ k.transpose(-1, -2) + s1).softmax(-1) @ v))


class ChannelsFirst(nn.Module):  # UNet-style: 1x1 convs over (N, C, L), heads on dim 1
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Conv1d(8, 16, 1) for _ in range(3))
        self.o = nn.Conv1d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, length = x.shape
        q, k, v = (c(x).view(n, 4, 4, length) for c in (self.q, self.k, self.v))
        y = v @ (q.transpose(-1, -2) @ k).softmax(-1).transpose(-1, -2)
        return self.o(y.reshape(n, 16, length))


class HeadMix(Heads):  # the scores of every head read by a Linear over the heads dim
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x)
        s = self.mix((q @ k.transpose(-1, -2)).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.out(s.softmax(-1) @ v)


class SeqFirstMHA(nn.Module):  # nn.MultiheadAttention with batch_first=False
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.f = nn.MultiheadAttention(12, 3), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.transpose(0, 1)
        return self.f((z + self.attn(z, z, z, need_weights=False)[0]).mean(0))


def load(
    tmp_path: Path,
    name: str,
    factory: Callable[[], nn.Module],
    shape: tuple[int, ...],
    decompose: bool = False,
) -> tuple[nn.Module, fx.GraphModule, GraphAnalysis, Feeder]:
    """The seeded model, its program (exported once under `name`, decomposed or not) as
    read back, its analysis and a feeder."""
    torch.manual_seed(0)
    model = factory().eval()
    key, path = f"{name}:{decompose}", tmp_path / "m.pt2"
    if key not in _SAVED:
        dynamic = ({0: torch.export.Dim("batch", min=1)},)
        program = torch.export.export(model, (torch.randn(4, *shape),), dynamic_shapes=dynamic)
        torch.export.save(program.run_decompositions() if decompose else program, path)
        _SAVED[key] = path.read_bytes()
    path.write_bytes(_SAVED[key])
    gm = read_program(path).module()
    analysis = analyse(gm)
    return model, gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16)


def random_plan(analysis: GraphAnalysis, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        g.name: sorted(
            rng.choice(g.width, size=int(rng.integers(1, g.width)), replace=False).tolist()
        )
        for g in analysis.prunable
        if g.width > 1
    }


def cut_equals_zeroed(
    tmp_path: Path,
    gm: fx.GraphModule,
    analysis: GraphAnalysis,
    feeder: Feeder,
    plan: dict[str, list[int]],
) -> None:
    """The pruned program, exported and read back, equals the original with the removed
    units zeroed where each consumer reads them."""
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(3, *feeder.example()[0].shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(
            pruned(x), zeroed(gm, analysis, plan).run(x), rtol=1e-4, atol=1e-5
        )


# Each model, its input shape, and the head group it must have: (group name, units). A
# unit is a head, or under grouped-query attention a kv head with its query heads.
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], str, int]] = {
    "v_head_dim": (VHeadDim, (T, D), "q", 4),
    "gate": (Gate, (T, D), "q", 4),  # the gate's rows are cut with the heads they scale
    "sum_head_dim": (SumHeadDim, (T, D), "q", 4),
    "chunk": (Chunk, (T, D), "qkv", 4),
    "falcon": (Falcon, (T, D), "qkv", 2),
    "mla": (MLA, (T, D), "qn", 2),  # qn, qr, kn, kr and v: one group
    "primer": (Primer, (T, D), "q", 4),
    "gqa_bias": (GQABias, (T, D), "q", 2),
    "realformer": (RealFormer, (T, D), "a.q", 4),  # both layers' heads
    "channels_first": (ChannelsFirst, (8, 6), "q", 4),
    "head_mix": (HeadMix, (T, D), "v", 4),  # v with the mixing Linear's rows
    "seq_first_mha": (SeqFirstMHA, (T, 12), "attn.in_proj_weight", 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_heads_are_cut_whole_and_equal_zeroed_heads(tmp_path: Path, name: str) -> None:
    factory, shape, group_name, units = CASES[name]
    model, gm, analysis, feeder = load(tmp_path, name, factory, shape)
    group = analysis.group(group_name)
    assert group.prunable and group.width == units, [g.describe() for g in analysis.groups]
    keep_all = apply_plan(gm, analysis, {g.name: list(range(g.width)) for g in analysis.prunable})
    x = torch.randn(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(keep_all(x), model(x), rtol=1e-5, atol=1e-5)
    cut_equals_zeroed(tmp_path, gm, analysis, feeder, random_plan(analysis, len(name)))


@pytest.mark.parametrize("name", ["gqa_bias", "falcon"])
def test_decomposed_programs_have_the_same_heads_and_cut_them_alike(
    tmp_path: Path, name: str
) -> None:
    factory, shape = CASES[name][:2]
    _, _, plain, _ = load(tmp_path, name, factory, shape)
    _, gm, analysis, feeder = load(tmp_path, name, factory, shape, decompose=True)
    assert [g.describe() for g in analysis.prunable] == [g.describe() for g in plain.prunable]
    cut_equals_zeroed(tmp_path, gm, analysis, feeder, random_plan(analysis, 3))
