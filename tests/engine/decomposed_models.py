"""Models and helpers for tests/engine/test_graph_decomposed.py: small models whose
decomposed programs use `addmm`/`mm`/`bmm` over `W.T`, reading them back through the safe
reader, and the zeroing interpreter that a cut is compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from pruning.data import Feeder
from pruning.graph import GraphAnalysis, analyse
from pruning.reader import read_program
from pruning.surgery import apply_plan
from tests.engine.graph_helpers import Zeroing, consumer_masks
from tests.tiny_models import MLP, randomize_bn
from tests.zoo.programs import roundtrip

aten = torch.ops.aten


class Tokens(nn.Module):
    """An MLP over tokens (N, T, d): decomposed into view + addmm/mm + view."""

    input_shape = (5, 6)

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, 10, bias=False)  # mm
        self.out = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(nn.functional.gelu(self.fc1(x)))))


class ConvHead(nn.Module):
    """Conv -> BN -> ReLU -> pool -> flatten -> Linear -> ReLU -> Linear."""

    input_shape = (3, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


class ChannelsLast(nn.Module):
    """Linear layers over a permuted feature map: a non-contiguous input decomposes into
    expand + clone + view + bmm over a broadcast W.T (the bias, if any, added after)."""

    input_shape = (3, 6, 6)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 12, bias=False)  # bmm, no bias
        self.fc2 = nn.Linear(12, 6)  # mm + add after, its input a view of fc1's output
        self.mix = nn.Linear(6, 7)  # bmm + add: reads fc2's channels through a transpose
        self.head = nn.Linear(7, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.conv(x).permute(0, 2, 3, 1))  # (N, H, W, 12)
        h = torch.relu(self.fc2(torch.relu(h)))  # (N, H, W, 6)
        h = torch.relu(self.mix(h.transpose(1, 2)))  # (N, W, H, 7)
        return self.head(h.mean((1, 2)))


class Attention(nn.Module):
    """Single-head attention in plain matmuls: `bmm` of activations, twice."""

    input_shape = (5, 6)

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(6, 8), nn.Linear(6, 8), nn.Linear(6, 8)
        self.o = nn.Linear(8, 6)
        self.fc = nn.Linear(6, 10)
        self.head = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), -1)
        h = self.o(a @ self.v(x))  # v's channels pass the product: columns of its operand
        return self.head(torch.relu(self.fc(h)))[:, 0]


class RootWeight(nn.Module):
    """`F.linear` with a weight of the model's own, no bias: `mm` over a root parameter."""

    input_shape = (6,)

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.w = nn.Parameter(torch.randn(5, 8) / 3)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(nn.functional.linear(torch.tanh(self.fc(x)), self.w)))


MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "tokens": Tokens,
    "conv_head": ConvHead,
    "channels_last": ChannelsLast,
    "attention": Attention,
    "root_weight": RootWeight,
}
SHAPES: dict[str, tuple[int, ...]] = {"mlp": (6,)}
# Zoo models checked against their plain export (vit's decomposed SDPA is refused by the
# reader: `aten.any` is not on its allowlist).
ZOO_DECOMPOSED = ["conv1d", "convnext", "densenet", "resnext", "transformer_mlp", "vit", "mha"]


def model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(MODELS[name](), seed).eval()


def shape(name: str, model: nn.Module) -> tuple[int, ...]:
    return SHAPES.get(name) or tuple(model.input_shape)  # type: ignore[arg-type]


def export_program(model: nn.Module, shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    example = (torch.randn(4, *shape),)
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    return torch.export.export(model.eval(), example, dynamic_shapes=dynamic)


def read(
    tmp_path: Path, program: torch.export.ExportedProgram, name: str
) -> tuple[fx.GraphModule, GraphAnalysis, Feeder]:
    path = tmp_path / name
    torch.export.save(program, path)
    gm = read_program(path).module()
    analysis = analyse(gm)
    return gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16)


def decomposed(
    tmp_path: Path, model: nn.Module, shape: tuple[int, ...], table: str = "core"
) -> tuple[fx.GraphModule, GraphAnalysis, Feeder]:
    program = export_program(model, shape)
    if table == "default":
        program = program.run_decompositions(torch.export.default_decompositions())
    else:
        program = program.run_decompositions()
    gm, analysis, feeder = read(tmp_path, program, "decomposed.pt2")
    targets = {n.target for n in gm.graph.nodes}
    assert aten.linear.default not in targets  # the Linear layers really are decomposed
    return gm, analysis, feeder


def groups(analysis: GraphAnalysis) -> dict[str, tuple[int, int, bool]]:
    return {g.name: (g.width, g.parts, g.prunable) for g in analysis.groups}


def zeroed(gm: fx.GraphModule, analysis: GraphAnalysis, plan: dict[str, list[int]]) -> Zeroing:
    return Zeroing(gm, consumer_masks(analysis, plan))


def random_plan(
    analysis: GraphAnalysis, seed: int, skip: set[str] | frozenset[str] = frozenset()
) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        g.name: sorted(
            rng.choice(g.width, size=int(rng.integers(1, g.width)), replace=False).tolist()
        )
        for g in analysis.prunable
        if g.width > 1 and g.parts == 1 and g.name not in skip
    }


def check_cut_equals_zeroed(
    tmp_path: Path, gm: fx.GraphModule, analysis: GraphAnalysis, feeder: Feeder, plan: Any
) -> None:
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(7, *feeder.example()[0].shape[1:])
    with torch.no_grad():
        expected = zeroed(gm, analysis, plan).run(x)
        expected = expected[0] if isinstance(expected, (tuple, list)) else expected
        torch.testing.assert_close(pruned(x), expected, rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in gm.parameters())
