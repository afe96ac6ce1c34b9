"""Llama-style MLP blocks: SwiGLU and RMSNorm, as `torch.export` programs.

`down(silu(gate(x)) * up(x))`: the product couples gate's and up's rows with down's columns,
one group cut alike. An RMSNorm over the residual stream (written by hand as Llama code
does, `nn.RMSNorm` as exported: `aten.rms_norm`, or decomposed) lets the stream be cut: its
weight is sliced, and the mean of squares keeps dividing by the original width, so a cut
equals the original with those channels zeroed. Here the channels are zeroed at their
source, the producers' rows (the DESIGN's "neurons' outputs zeroed"): the residual stream
is a sum of Linear outputs, so a channel zeroed there is zero wherever it is read, by the
norms as by the next layers. Every pruned program is saved and read back through the safe
reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import fx, nn

from pruning.data import Feeder
from pruning.graph import GraphAnalysis, analyse, get_tensor
from pruning.module_copy import clone_module, set_tensor
from pruning.reader import read_program
from pruning.surgery import apply_plan
from tests.engine.graph_helpers import readers, sliced
from tests.zoo.programs import roundtrip

aten = torch.ops.aten
D, HIDDEN, TOKENS, D_IN = 8, 12, 5, 6


class HandRMSNorm(nn.Module):
    """RMSNorm as Llama code writes it."""

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "hand": HandRMSNorm,
    "module": lambda d: nn.RMSNorm(d, eps=1e-5),
    "default_eps": nn.RMSNorm,  # eps None: the dtype's machine epsilon
    "no_weight": lambda d: nn.RMSNorm(d, elementwise_affine=False),
}


class Block(nn.Module):
    """x + down(silu(gate(norm(x))) * up(norm(x)))."""

    def __init__(self, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.norm = norm(D)
        self.gate = nn.Linear(D, HIDDEN, bias=False)
        self.up = nn.Linear(D, HIDDEN, bias=False)
        self.down = nn.Linear(HIDDEN, D, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return x + self.down(nn.functional.silu(self.gate(y)) * self.up(y))


class Llama(nn.Module):
    """Embedding, two blocks, a final norm and a head over (N, T, d_in) tokens."""

    def __init__(self, norm: Callable[[int], nn.Module], seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(D_IN, D)
        self.blocks = nn.Sequential(Block(norm), Block(norm))
        self.norm = norm(D)
        self.head = nn.Linear(D, 3)
        with torch.no_grad():  # norm weights that differ per channel, so slicing matters
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(torch.rand_like(p) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.embed(x))))


def _read(
    tmp_path: Path, name: str, seed: int = 0, decomposed: bool = False
) -> tuple[nn.Module, fx.GraphModule, GraphAnalysis, Feeder]:
    model = Llama(NORMS[name], seed).eval()
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    program = torch.export.export(model, (torch.randn(4, TOKENS, D_IN),), dynamic_shapes=dynamic)
    if decomposed:
        program = program.run_decompositions()
    path = tmp_path / "llama.pt2"
    torch.export.save(program, path)
    gm = read_program(path).module()
    analysis = analyse(gm)
    return model, gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16)


def _zeroed(
    gm: fx.GraphModule, analysis: GraphAnalysis, plan: dict[str, list[int]]
) -> fx.GraphModule:
    """The original with the removed channels' producer rows (weights and biases) zeroed."""
    out = clone_module(gm)
    for name, kept in plan.items():
        group = analysis.group(name)
        gone = [c for c in range(group.width) if c not in set(kept)]
        for ps in group.producers:
            tensor = get_tensor(out, ps.path).detach().clone()
            index = torch.tensor(ps.span.positions(gone), dtype=torch.long)
            set_tensor(out, ps.path, tensor.index_fill(ps.span.dim, index, 0.0))
    return out


def _random_plan(analysis: GraphAnalysis, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        g.name: sorted(rng.choice(g.width, size=int(rng.integers(1, g.width)), replace=False))
        for g in analysis.prunable
    }


@pytest.mark.parametrize("decomposed", [False, True])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_swiglu_and_the_residual_stream_through_rms_norms_are_groups(
    tmp_path: Path, name: str, decomposed: bool
) -> None:
    _, _, analysis, _ = _read(tmp_path, name, decomposed=decomposed)
    stream = analysis.group("embed")
    assert stream.members == ["embed", "blocks.0.down", "blocks.1.down"]
    assert stream.prunable, stream.frozen_reason
    assert len(stream.renorms) == 3  # two blocks' norms and the final one
    weights = ["blocks.0.norm.weight", "blocks.1.norm.weight", "norm.weight"]
    assert sliced(stream) == ([] if name == "no_weight" else weights)
    assert readers(stream)[-1] == "head.weight"
    for i in (0, 1):
        swiglu = analysis.group(f"blocks.{i}.gate")
        assert swiglu.members == [f"blocks.{i}.gate", f"blocks.{i}.up"]
        assert swiglu.prunable
        assert readers(swiglu) == [f"blocks.{i}.down.weight"]
    assert [g.name for g in analysis.frozen] == ["head"]


@pytest.mark.parametrize("name", sorted(NORMS))
def test_keep_all_reproduces_outputs(tmp_path: Path, name: str) -> None:
    model, gm, analysis, feeder = _read(tmp_path, name)
    plan = {g.name: list(range(g.width)) for g in analysis.prunable}
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(7, TOKENS, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), gm(x), rtol=0, atol=0)
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-6, atol=1e-6)


# Each norm plain and decomposed, each with a keep-set of its own (two seeds in all).
@pytest.mark.parametrize(("seed", "decomposed"), [(0, False), (1, True)])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_random_cuts_equal_zeroed_channels(
    tmp_path: Path, name: str, seed: int, decomposed: bool
) -> None:
    _, gm, analysis, feeder = _read(tmp_path, name, seed, decomposed)
    plan = _random_plan(analysis, seed)
    assert set(plan) == {"embed", "blocks.0.gate", "blocks.1.gate"}
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(7, TOKENS, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _zeroed(gm, analysis, plan)(x), rtol=1e-4, atol=1e-5)
    assert pruned.get_parameter("embed.weight").shape[0] == len(plan["embed"])
    assert pruned.get_parameter("blocks.1.up.weight").shape[0] == len(plan["blocks.1.gate"])
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in gm.parameters())


def test_a_hand_written_mean_becomes_a_sum_over_the_original_width(tmp_path: Path) -> None:
    _, gm, analysis, feeder = _read(tmp_path, "hand")
    pruned = apply_plan(gm, analysis, {"embed": [0, 2, 3, 5, 7]})
    targets = [n.target for n in pruned.graph.nodes]
    assert aten.mean.dim not in targets
    assert targets.count(aten.sum.dim_IntList) == 3
    divisors = [n.args[1] for n in pruned.graph.nodes if n.target is aten.div.Scalar]
    assert divisors == [D, D, D]
    reread = roundtrip(tmp_path, pruned, feeder)  # sum and div pass the reader's allowlist
    assert aten.sum.dim_IntList in [n.target for n in reread.graph.nodes]


def test_an_rms_norm_cut_scales_its_weight_and_eps(tmp_path: Path) -> None:
    _, gm, analysis, _ = _read(tmp_path, "module")
    kept = [1, 2, 6, 7]  # C = 8 -> C' = 4
    pruned = apply_plan(gm, analysis, {"embed": kept})
    norm = next(n for n in pruned.graph.nodes if n.target is aten.rms_norm.default)
    assert norm.args[1] == [4]
    assert norm.args[3] == pytest.approx(1e-5 * 2)
    original = gm.get_parameter("blocks.0.norm.weight")[kept]
    scaled = pruned.get_parameter("blocks.0.norm.weight")
    torch.testing.assert_close(scaled, original * 2**0.5)


class HandLayerNorm(nn.Module):
    """x - mean(x): a mean over the channels that a cut would change."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D_IN, D)
        self.fc2 = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h - h.mean(-1, keepdim=True))


def test_a_mean_over_the_channels_of_anything_but_their_square_freezes(tmp_path: Path) -> None:
    model = HandLayerNorm().eval()
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    program = torch.export.export(model, (torch.randn(4, D_IN),), dynamic_shapes=dynamic)
    torch.export.save(program, tmp_path / "ln.pt2")
    analysis = analyse(read_program(tmp_path / "ln.pt2").module())
    assert "reduces over these channels" in (analysis.group("fc1").frozen_reason or "")
