"""The walk: every op is dispatched to the one handler of its family; an op without one
freezes the channels it touches, as do the model's outputs and a group no layer reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import fx, nn

from pruning.graph.registry import HandlerTable, combine
from pruning.graph.walk import HANDLERS
from tests.engine.graph_helpers import analysed


class Flipped(nn.Module):
    """`flip` reverses the channels: an op the analysis has no handler for."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.flip(self.fc1(x), [1]))


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc1(x)
        return h, self.fc2(h)


class SizeOnly(nn.Module):
    """fc1's output is only measured, never read by a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(x).reshape(self.fc1(x).shape[0], -1)


def _noop(state: object, node: fx.Node) -> None:
    del state, node


def test_an_op_without_a_handler_freezes_the_channels_it_touches(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Flipped(), 6)
    reason = analysis.group("fc1").frozen_reason or ""
    assert "aten.flip.default" in reason
    assert "is not supported on these channels" in reason


def test_every_model_output_is_frozen(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, TwoOutputs(), 6)
    for name in ("fc1", "fc2"):
        assert analysis.group(name).frozen_reason == "its channels are a model output"


def test_a_group_no_layer_reads_is_frozen(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, SizeOnly(), 6)
    assert analysis.group("fc1").frozen_reason == "no layer consumes these channels"


def test_an_op_has_one_handler() -> None:
    table = HandlerTable()
    table.handles(torch.ops.aten.relu.default)(_noop)
    with pytest.raises(ValueError, match="two handlers"):
        table.handles(torch.ops.aten.relu.default)(_noop)
    other = HandlerTable()
    other.handles(torch.ops.aten.relu.default)(_noop)
    with pytest.raises(ValueError, match="two handlers"):
        combine(table, other)


def test_the_walk_knows_every_family() -> None:
    aten = torch.ops.aten
    families = {
        aten.linear.default: "layers",
        aten.relu.default: "passthrough",
        aten.view.default: "reshape",
        aten.add.Tensor: "coupling",
        aten.cat.default: "concat",
    }
    for target, family in families.items():
        assert HANDLERS[target].__module__ == f"pruning.graph.{family}"
