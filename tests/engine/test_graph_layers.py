"""Layers: Linear and Conv produce and consume groups; norms and depthwise convs follow them;
a grouped convolution cuts its input and output in equal parts."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pruning.graph import Span
from tests.engine.graph_helpers import analysed, readers, sliced
from tests.tiny_models import MLP


class ConvChain(nn.Module):
    """conv -> depthwise conv -> BatchNorm -> conv -> mean -> Linear."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 4, 1, groups=groups)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 6, 6)
        h = self.c2(torch.relu(self.bn(self.dw(self.c1(x)))))  # (N, 4, 6, 6)
        return self.fc(h.mean((2, 3)))


class ConcatIntoGrouped(nn.Module):
    """Two layers' channels concatenated, then read by a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.g = nn.Conv2d(8, 4, 1, groups=2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.g(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.fc(h.mean((2, 3)))


class TokenMLP(nn.Module):
    """Linear -> LayerNorm over the channels -> Linear, on (N, T, D) tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 5, 6)
        return self.fc2(self.norm(self.fc1(x)))


def test_groups_of_an_mlp(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, MLP(), 6)
    assert [g.name for g in analysis.prunable] == ["fc1", "fc2"]
    assert [p.path for p in analysis.group("fc1").channel_params] == [
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
    ]
    assert analysis.group("out").frozen_reason == "its channels are a model output"
    assert analysis.inputs[0].shape == [None, 6]


def test_a_layer_produces_its_rows_and_consumes_its_input_columns(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, MLP(), 6)
    fc1 = analysis.group("fc1")
    assert [(p.path, p.span) for p in fc1.producers] == [
        ("fc1.weight", Span(0)),
        ("fc1.bias", Span(0)),
    ]
    assert readers(fc1) == ["fc2.weight"]
    assert [c.weight.span for c in fc1.consumers] == [Span(1)]
    assert [c.kind for c in fc1.consumers] == ["linear"]


def test_a_depthwise_conv_and_batch_norm_follow_their_input(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, ConvChain(), (3, 6, 6))
    assert [g.name for g in analysis.groups] == ["c1", "c2", "fc"]  # no group of its own
    c1 = analysis.group("c1")
    assert sliced(c1) == [
        "dw.weight",
        "dw.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
    ]
    assert [(f.arg, f.item) for f in c1.arg_fixes] == [(6, None)]  # conv2d's `groups`
    assert readers(c1) == ["c2.weight"]
    assert [g.name for g in analysis.prunable] == ["c1", "c2"]


def test_a_grouped_conv_cuts_its_input_and_output_in_equal_parts(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, ConvChain(groups=2), (3, 6, 6))
    assert analysis.group("c1").parts == 2
    assert analysis.group("c2").parts == 2
    assert [c.groups for c in analysis.group("c1").consumers] == [2]
    assert [g.name for g in analysis.prunable] == ["c1", "c2"]


def test_a_grouped_conv_over_several_layers_channels_freezes_them(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, ConcatIntoGrouped(), (3, 4, 4))
    for name in ("a", "b"):
        reason = analysis.group(name).frozen_reason or ""
        assert "grouped convolution over several layers' channels" in reason
    assert analysis.group("g").prunable
    assert analysis.group("g").parts == 2


def test_a_layer_norm_over_the_channels_is_sliced_with_them(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, TokenMLP(), (5, 6))
    fc1 = analysis.group("fc1")
    assert fc1.prunable
    assert sliced(fc1) == ["norm.weight", "norm.bias"]
    assert [(f.arg, f.item) for f in fc1.arg_fixes] == [(1, 0)]  # normalized_shape[0]
    assert [c.tap.span for c in fc1.consumers] == [Span(2)]  # channels last: (N, T, D)
