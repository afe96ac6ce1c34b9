"""Concatenation and split along the channels: each group keeps its run of positions, at an
offset after a `cat`, rebased in each part of a `split`; a split through one layer's
channels folds them (equal parts) or divides them (`pruning.graph.divide`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pruning.graph import OUTPUT_SIZES, Span
from tests.engine.graph_helpers import analysed, readers


class Branches(nn.Module):
    """Two branches concatenated (Inception), split back along the branch edges."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.joined = nn.Conv2d(10, 3, 1)
        self.left = nn.Conv2d(4, 3, 1)
        self.right = nn.Conv2d(6, 3, 1)
        self.fc = nn.Linear(9, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 4, 4)
        h = torch.cat([self.a(x), self.b(x)], dim=1)  # (N, 10, 4, 4): a at 0, b at 4
        left, right = h.split([4, 6], dim=1)
        out = torch.cat([self.joined(h), self.left(left), self.right(right)], dim=1)
        return self.fc(out.mean((2, 3)))


class ChannelSplit(nn.Module):
    """ShuffleNet's channel split: one layer's channels split between two paths, in halves
    (`chunk`) or unevenly."""

    def __init__(self, sizes: tuple[int, int] = (4, 4)) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.conv = nn.Conv2d(3, 8, 1)
        self.branch = nn.Conv2d(sizes[1], 4, 1)
        self.fc = nn.Linear(sizes[0] + 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.conv(x).split(self.sizes, dim=1)
        return self.fc(torch.cat([p, self.branch(q)], dim=1).mean((2, 3)))


class TokenSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 6, 6)
        first, second = self.fc1(x).split(3, dim=1)  # two (N, 3, 8) halves of the tokens
        return self.fc2((first * second).mean(1))


def test_a_concatenation_places_each_group_at_its_offset(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Branches(), (3, 4, 4))
    joined_a = [c for c in analysis.group("a").consumers if c.weight.path == "joined.weight"]
    joined_b = [c for c in analysis.group("b").consumers if c.weight.path == "joined.weight"]
    assert [c.weight.span for c in joined_a] == [Span(1, 0)]
    assert [c.weight.span for c in joined_b] == [Span(1, 4)]
    assert {g.name for g in analysis.prunable} == {"a", "b", "joined", "left", "right"}


def test_a_split_along_group_edges_hands_each_part_its_groups(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Branches(), (3, 4, 4))
    a, b = analysis.group("a"), analysis.group("b")
    assert readers(a) == ["joined.weight", "left.weight"]
    assert readers(b) == ["joined.weight", "right.weight"]
    assert [c.weight.span for c in b.consumers] == [Span(1, 4), Span(1, 0)]  # rebased part
    # The part sizes are arguments that shrink with the cut: part 0 with a, part 1 with b.
    assert [(f.arg, f.item) for f in a.arg_fixes] == [(OUTPUT_SIZES, 0)]
    assert [(f.arg, f.item) for f in b.arg_fixes] == [(OUTPUT_SIZES, 1)]


def test_a_split_into_equal_halves_cuts_channel_c_of_both(tmp_path: Path) -> None:
    # Channel c of each half is one unit (as q, k and v of a fused projection): rows c and
    # c + 4 of conv go together, read by fc at offset 0 and by branch at offset 0.
    analysis = analysed(tmp_path, ChannelSplit(), (3, 4, 4))
    conv = analysis.group("conv")
    assert conv.prunable and (conv.width, conv.unit) == (4, 2)
    assert [p.span for p in conv.producers if p.path == "conv.weight"] == [Span(0, 0), Span(0, 4)]
    assert sorted((c.weight.path, c.weight.span.offset) for c in conv.consumers) == [
        ("branch.weight", 0),
        ("fc.weight", 0),
    ]
    assert [(f.arg, f.item) for f in conv.arg_fixes] == [(OUTPUT_SIZES, 0), (OUTPUT_SIZES, 1)]


def test_an_uneven_split_through_one_layers_channels_divides_them(tmp_path: Path) -> None:
    """Each part's channels become a group of their own, named by the channels they hold:
    rows 0-2 of conv are read by fc, rows 3-7 by branch."""
    analysis = analysed(tmp_path, ChannelSplit((3, 5)), (3, 4, 4))
    first, second = analysis.group("conv[0:3]"), analysis.group("conv[3:8]")
    assert first.prunable and second.prunable and (first.width, second.width) == (3, 5)
    assert [p.span for p in second.producers] == [Span(0, 3), Span(0, 3)]  # weight, bias
    assert [(c.weight.path, c.weight.span.offset) for c in first.consumers] == [("fc.weight", 0)]
    assert [(c.weight.path, c.weight.span.offset) for c in second.consumers] == [
        ("branch.weight", 0)
    ]
    assert [(f.arg, f.item) for f in first.arg_fixes] == [(OUTPUT_SIZES, 0)]
    assert [(f.arg, f.item) for f in second.arg_fixes] == [(OUTPUT_SIZES, 1)]
    assert [g.name for g in analysis.groups][:3] == ["conv[0:3]", "conv[3:8]", "branch"]


def test_a_split_along_another_dim_keeps_the_channels(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, TokenSplit(), (6, 6))
    assert [g.name for g in analysis.prunable] == ["fc1"]
    assert readers(analysis.group("fc1")) == ["fc2.weight"]
