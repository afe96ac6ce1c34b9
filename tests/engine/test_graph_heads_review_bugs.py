"""Adversarial review of attention heads, continued: forms that must freeze the heads (the
engine cannot cut them soundly, so it must not try), and the bugs the review found, each
fixed since: a per-head mask, MultiheadAttention's key_padding_mask, a stored tensor or a
layer shared by two groups, heads merged into the features, a head's neuron count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.engine.test_graph_heads_review import (
    D,
    Heads,
    T,
    attend,
    cut_equals_zeroed,
    load,
)


class ResidualHeads(Heads):  # the residual stream itself viewed into query heads
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.q(x)
        y = attend(self.split(h, 4), self.split(self.k(h), 4), self.split(self.v(h), 4))
        return h + self.out(y)


class HeadDimRead(Heads):  # q's heads also read by a Linear over head_dim
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Linear(4, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x)
        return self.out(F.scaled_dot_product_attention(q, k, v)) + self.p(q).mean(1)


class RawValues(Heads):  # values are the input itself: no layer makes their heads
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, _ = self.qkv(x)
        return self.out(attend(q, k, self.split(x, 4)))


class HeadsAsTokens(Heads):  # (N, T, C) viewed as (N, T * heads, head_dim)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = (p(x).view(n, t * 4, 4) for p in (self.q, self.k, self.v))
        return self.o(F.scaled_dot_product_attention(q, k, v).reshape(n, t, 16))


class OneHeadRead(Heads):  # head 0's output read on its own
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Linear(4, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.scaled_dot_product_attention(*self.qkv(x))
        return self.out(y) + self.p(y[:, 0])


class TiledKV(Heads):  # 2 kv heads repeated in tile order (h, h + 2), not in a row
    def __init__(self) -> None:
        super().__init__(kv=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(x, 4, 2)
        k, v = (z[:, None].expand(n, 2, 2, t, 4).reshape(n, 4, t, 4) for z in (k, v))
        return self.out(attend(q, k, v))


class SwappedMerge(Heads):  # heads merged back as (head_dim, heads) for the output Linear
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, _ = (y := F.scaled_dot_product_attention(*self.qkv(x))).shape
        return self.o(y.permute(0, 2, 3, 1).reshape(n, t, 16))


class MixedTable(Heads):  # a (positions, heads) table gathered, viewed as (heads, T, T)
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(9, 4))
        self.register_buffer("index", torch.randint(0, 9, (T * T,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(attend(*self.qkv(x), self.table[self.index].reshape(4, T, T)))


class Alibi(Heads):  # a slope per head times distances: a product, not a stored tensor
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("slopes", torch.tensor([0.5, 0.25, 0.125, 0.0625]).view(4, 1, 1))
        self.register_buffer("dist", (torch.arange(T)[None] - torch.arange(T)[:, None]).abs())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(attend(*self.qkv(x), -self.slopes * self.dist))


FROZEN: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "residual_heads": (ResidualHeads, "combines channels laid out differently"),
    "head_dim_read": (HeadDimRead, "reads these channels along another dimension"),
    "raw_values": (RawValues, "a batched product over these channels"),
    "heads_as_tokens": (HeadsAsTokens, "reads heads merged with the batch"),
    "one_head_read": (OneHeadRead, "selects some of these channels"),
    "tiled_kv": (TiledKV, "a batched product over these channels"),
    "swapped_merge": (SwappedMerge, "cannot be cut (not whole heads or parts)"),
    "mixed_table": (MixedTable, "not cut alongside"),
    "alibi": (Alibi, "not cut alongside"),
}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_heads_that_cannot_be_cut_whole_freeze_with_a_reason(tmp_path: Path, name: str) -> None:
    factory, reason = FROZEN[name]
    _, _, analysis, _ = load(tmp_path, name, factory, (T, D))
    q = next(g for g in analysis.groups if "q" in g.members)
    assert reason in (q.frozen_reason or ""), [g.describe() for g in analysis.groups]


# -- bugs ------------------------------------------------------------------------------------
class StoredMask(Heads):  # SDPA's attn_mask: a stored bias per head, (heads, T, T)
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(4, T, T))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.scaled_dot_product_attention(*self.qkv(x), attn_mask=self.bias))


class KeyPadding(nn.Module):  # nn.MultiheadAttention with a key_padding_mask
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.f = nn.MultiheadAttention(12, 3, batch_first=True), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(x, x, x, key_padding_mask=x[..., 0] > 1.0, need_weights=False)[0]
        return self.f((x + y).mean(1))


class SharedScale(nn.Module):  # two layers scale their scores by one (1, 3, 1, 1) tensor
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.f = Heads(3, 3), Heads(3, 3), nn.Linear(D, 3)
        self.scale = nn.Parameter(torch.tensor([0.5, 2.0, 1.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.a, self.b):
            q, k, v = layer.qkv(x, 3, 3)
            x = x + layer.out(((q @ k.transpose(-1, -2)) * self.scale).softmax(-1) @ v)
        return self.f(x)


class SharedLayer(nn.Module):  # one attention layer applied twice (tied weights)
    def __init__(self) -> None:
        super().__init__()
        self.layer, self.f = Heads(), nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer.out(attend(*self.layer.qkv(x)))
        return self.f(x + self.layer.out(attend(*self.layer.qkv(torch.relu(x)))))


class SwappedBmm(Heads):  # a (head_dim, heads) merge read by bmm with W.T
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, 16) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, _ = (y := F.scaled_dot_product_attention(*self.qkv(x))).shape
        return torch.bmm(y.permute(0, 2, 3, 1).reshape(n, t, 16), self.w.t().expand(n, 16, D))


def _heads_cut_soundly(tmp_path: Path, name: str, factory: Callable[[], nn.Module]) -> None:
    """Head groups left prunable (two cut differently, if there are two) equal zeroing."""
    shape = (T, 12) if name == "key_padding" else (T, D)
    _, gm, analysis, feeder = load(tmp_path, name, factory, shape)
    heads = [g.name for g in analysis.prunable if g.kind == "head"]
    plan = dict(zip(heads, ([1, 2], [0, 2]), strict=False))
    cut_equals_zeroed(tmp_path, gm, analysis, feeder, plan)


# Found by the review, fixed in the engine; the text says what used to go wrong.
FIXED = {
    "stored_mask": (
        StoredMask,
        "attention._sdpa never checks attn_mask: a (heads, T, T) mask is neither sliced nor "
        "frozen, so a cut program fails to export (2 heads kept in q, k, v; 4 in the mask)",
    ),
    "key_padding": (
        KeyPadding,
        "nn.MultiheadAttention expands key_padding_mask to (N, heads, 1, S) by a literal "
        "expand(-1, heads, ...) that is not shrunk; attention._sdpa accepts the mask, and the "
        "cut program fails to export",
    ),
    "shared_scale": (
        SharedScale,
        "a stored per-head tensor read by two head groups is sliced by both "
        "(coupling._slice_param_operand); surgery removes the union of their heads, the "
        "(1, 3, 1, 1) scale becomes (1, 1, 1, 1) and broadcasts: wrong outputs, no error",
    ),
    "shared_layer": (
        SharedLayer,
        "a layer called twice makes two groups over the same weights (layers.produce), "
        "cut independently: surgery removes the union of rows and the program breaks",
    ),
    "swapped_bmm": (
        SwappedBmm,
        "split_view.merge_into_batch gives the (head_dim, heads) merge a map with a period "
        "on the feature dim; walk.PERIODIC lets bmm read it and matmul._linear records W's "
        "columns as one per head (head_dim 1), so the cut removes the wrong columns",
    ),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_heads_the_engine_leaves_prunable_are_cut_soundly(tmp_path: Path, name: str) -> None:
    _heads_cut_soundly(tmp_path, name, FIXED[name][0])


# Of the fixed cases, those now cut (a per-head mask sliced with the heads, one group for
# the heads sharing a stored scale, a layer called twice); the others freeze.
CUT_NOW = {"stored_mask", "shared_scale", "shared_layer"}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_the_fixed_cases_are_cut_or_frozen_as_they_should(tmp_path: Path, name: str) -> None:
    shape = (T, 12) if name == "key_padding" else (T, D)
    _, _, analysis, _ = load(tmp_path, name, FIXED[name][0], shape)
    heads = [g for g in analysis.groups if g.kind == "head"]
    assert len(heads) == 1, [g.describe() for g in heads]
    assert heads[0].prunable == (name in CUT_NOW), heads[0].frozen_reason


class SummedFirst(Heads):  # a sum over head_dim read before the output projection
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Linear(4, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.scaled_dot_product_attention(*self.qkv(x))
        side = self.p(y.sum(-1).transpose(1, 2))
        return side + self.out(y)


# Was: neurons_per_unit (and describe's head_dim) took consumers[0]'s block, so a head first
# read summed over head_dim counted as 1 neuron in the global budget, not 4.
def test_a_head_counts_its_output_features_whichever_reader_comes_first(tmp_path: Path) -> None:
    _, _, analysis, _ = load(tmp_path, "summed_first", SummedFirst, (T, D))
    group = analysis.group("q")
    assert group.describe()["head_dim"] == 4 and group.neurons_per_unit == 4
