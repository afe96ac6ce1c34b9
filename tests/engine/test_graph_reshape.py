"""Reshapes: the channel dim moves (permute, transpose), merges with the dims after it
(flatten, view: each channel a block of features), or stays while another dim is cut;
views that split it (attention heads) and slices that pick some channels freeze."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pruning.graph import Span
from tests.engine.graph_helpers import analysed, readers


class FlattenIntoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 4, 4)
        return self.fc(self.conv(x).flatten(1))  # (N, 64): channel c is features 16c..16c+15


class ViewIntoLinear(nn.Module):
    """A view that spells out the feature count: that size shrinks with the cut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 2, 2)
        return self.fc(self.conv(x).view(-1, 16))


class Heads(nn.Module):
    """Channels viewed as (heads, head_dim), as attention does, then summed over `over`."""

    def __init__(self, over: int) -> None:
        super().__init__()
        self.over = over
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(4 if over == 1 else 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h.view(h.shape[0], 3, 4).sum(self.over))


class ChannelsLast(nn.Module):
    """A conv's channels moved last and read by a Linear (ConvNeXt's pointwise layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 2, 2)
        h = self.fc(self.conv(x).permute(0, 2, 3, 1))  # (N, 2, 2, 5)
        return self.head(h.transpose(1, 3).mean((2, 3)))  # (N, 5, 2, 2) -> (N, 5)


class SomeChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x)[:, :4])


class FirstToken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 5, 6)
        return self.fc2(self.fc1(x)[:, 0])  # (N, 8)


def test_flatten_turns_each_channel_into_a_block_of_features(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, FlattenIntoLinear(), (3, 4, 4))
    (consumer,) = analysis.group("conv").consumers
    assert consumer.weight.path == "fc.weight"
    assert consumer.weight.span == Span(1, 0, 16)
    assert consumer.tap.span == Span(1, 0, 16)
    assert analysis.group("conv").prunable


def test_a_view_that_spells_out_the_width_shrinks_with_the_cut(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, ViewIntoLinear(), (3, 2, 2))
    conv = analysis.group("conv")
    assert conv.prunable
    assert [c.weight.span for c in conv.consumers] == [Span(1, 0, 4)]
    assert [(f.arg, f.item, f.block) for f in conv.arg_fixes] == [(1, 1, 4)]


def test_a_view_into_heads_cuts_whole_heads(tmp_path: Path) -> None:
    # (12,) -> (3, 4): the 3 heads are the units; a head's 4 channels go together.
    analysis = analysed(tmp_path, Heads(over=2), 6)
    fc1 = analysis.group("fc1")
    assert fc1.prunable and fc1.width == 3 and fc1.unit == 4
    assert [p.span for p in fc1.producers] == [Span(0, 0, 4), Span(0, 0, 4)]
    assert [c.weight.span for c in fc1.consumers] == [Span(1, 0, 1)]
    assert [(f.arg, f.item, f.block) for f in fc1.arg_fixes] == [(1, 1, 1)]


def test_heads_summed_together_freeze(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Heads(over=1), 6)
    reason = analysis.group("fc1").frozen_reason or ""
    assert "reduces over these channels" in reason


def test_permute_and_transpose_move_the_channel_dim(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, ChannelsLast(), (3, 2, 2))
    assert [g.name for g in analysis.prunable] == ["conv", "fc"]
    assert [c.tap.span for c in analysis.group("conv").consumers] == [Span(3)]
    assert readers(analysis.group("fc")) == ["head.weight"]
    assert [c.tap.span for c in analysis.group("fc").consumers] == [Span(1)]


def test_a_slice_of_some_channels_freezes_them(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, SomeChannels(), 6)
    assert "selects some of these channels" in (analysis.group("fc1").frozen_reason or "")


def test_a_slice_along_another_dim_keeps_the_channels(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, FirstToken(), (5, 6))
    assert [g.name for g in analysis.prunable] == ["fc1"]
    assert [c.tap.span for c in analysis.group("fc1").consumers] == [Span(1)]
