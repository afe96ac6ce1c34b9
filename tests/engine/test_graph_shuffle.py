"""Channel shuffles (ShuffleNet V2): followed as a permutation, cut, and rewritten as a
gather; splits through shuffled runs divide the groups (`pruning.graph.divide`).

The zoo's ShuffleNetish chains torchvision's shuffle (view, transpose, view) and
`nn.ChannelShuffle`; test_zoo checks its random cuts against zeroing and its roundtrip.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from pruning.graph import Span
from pruning.reader import read_program
from pruning.shuffle_surgery import kept_order
from pruning.surgery import apply_plan
from tests.engine.graph_helpers import Zeroing, analysed, consumer_masks
from tests.zoo.programs import load, roundtrip


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, *rest = x.shape
    return x.view(n, groups, c // groups, *rest).transpose(1, 2).reshape(n, c, *rest)


@pytest.mark.parametrize(("size", "groups"), [(8, 2), (12, 3), (12, 4)])
def test_the_gather_equals_the_shuffle_with_the_removed_positions_dropped(
    size: int, groups: int
) -> None:
    rng = random.Random(size * groups)
    x = torch.randn(3, size, 2)
    for _ in range(20):
        gone = set(rng.sample(range(size), rng.randrange(size)))
        kept = [i for i in range(size) if i not in gone]
        shuffled = _shuffle(x, groups)
        order = [(j % groups) * (size // groups) + j // groups for j in range(size)]
        expected = shuffled[:, [j for j in range(size) if order[j] not in gone]]
        got = x[:, kept].index_select(1, kept_order(size, groups, gone))
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_shuffled_runs_are_interleaved_and_splits_divide_them(tmp_path: Path) -> None:
    """left and right are shuffled into alternate positions; the next split hands channels
    0-1 of each to the block's output and 2-3 to its branch, so each is divided there."""
    _, _, analysis, _ = load(tmp_path, "shufflenet")
    names = [g.name for g in analysis.groups]
    assert names[:4] == ["left.0[0:1]", "left.0[1:2]", "left.0[2:4]", "right.0[0:1]"]
    # After the first shuffle, left's channel c sits at 2c and right's at 2c + 1; the split
    # takes positions 4-7 (left's channels 2-3, right's 2-3) into branch1, rebased.
    branch_reads = {
        g.name: c.weight.span
        for g in analysis.groups
        for c in g.consumers
        if c.weight.path == "branch1.0.weight"
    }
    assert branch_reads == {"left.0[2:4]": Span(1, 0, 1, 2), "right.0[2:4]": Span(1, 1, 1, 2)}
    # The final conv reads every group where the last shuffle put it (L: left, R: right).
    after = {
        g.name: c.weight.span.positions(range(g.width))
        for g in analysis.groups
        for c in g.consumers
        if c.weight.path == "after.0.weight"
    }
    # h2 = [L0, B0, R0, B1 | L1, B2, R1, B3] (B: branch1); its first half and branch2's
    # C0-C3 are shuffled into [L0, C0, B0, C1, R0, C2, B1, C3].
    assert after == {
        "left.0[0:1]": [0],
        "right.0[0:1]": [4],
        "branch1.0[0:2]": [2, 6],
        "branch2.2.0": [1, 3, 5, 7],
    }
    assert [s.node for s in analysis.group("left.0[0:1]").shuffles] == [
        "view_1",
        "view_3",
        "channel_shuffle",
    ]


def test_a_cut_rewrites_each_shuffle_as_a_gather(tmp_path: Path) -> None:
    _, gm, analysis, feeder = load(tmp_path, "shufflenet")
    plan = {"left.0[2:4]": [1], "branch1.0[0:2]": [0], "branch2.2.0": [0, 3]}
    pruned = apply_plan(gm, analysis, plan)
    targets = [str(n.target) for n in pruned.graph.nodes]
    assert targets.count("aten.index_select.default") == 3
    assert "aten.channel_shuffle.default" not in targets
    assert "aten.transpose.int" not in targets
    back = roundtrip(tmp_path, pruned, feeder)
    x = torch.randn(5, 4, 8, 8)
    with torch.no_grad():
        expected = Zeroing(gm, consumer_masks(analysis, plan)).run(x)
        torch.testing.assert_close(back(x), expected, rtol=1e-5, atol=1e-6)


class _FlattenShuffle(nn.Module):
    """A shuffle that merges back with `flatten`, then a split into unequal parts."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.left, self.right = nn.Conv2d(3, 2, 1), nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.cat([self.a(x), self.b(x)], dim=1))
        n, c, hh, ww = h.shape
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).flatten(1, 2)
        p, q = h.split([3, 5], dim=1)
        return (self.left(p) + self.right(q)).mean((2, 3))


def test_a_shuffle_merged_back_by_flatten_is_cut_like_a_view(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, _FlattenShuffle(), (3, 4, 4))
    assert [g.name for g in analysis.groups if not g.prunable] == ["left"]  # the output
    # [a0 b0 a1 | b1 a2 b2 a3 b3]: a and b divided where the split's edge falls
    assert [g.name for g in analysis.prunable] == ["a[0:2]", "a[2:4]", "b[0:1]", "b[1:4]"]
    gm = read_program(tmp_path / "model.pt2").module()
    plan = {"a[0:2]": [1], "a[2:4]": [0], "b[1:4]": [0, 2]}
    pruned = apply_plan(gm, analysis, plan)
    x = torch.randn(4, 3, 4, 4)
    with torch.no_grad():
        expected = Zeroing(gm, consumer_masks(analysis, plan)).run(x)
        torch.testing.assert_close(pruned(x), expected, rtol=1e-5, atol=1e-6)


class _MixedAfterShuffle(nn.Module):
    """A shuffle whose output is split into (2, 4) by unflatten: the interleaved runs
    cannot be followed there."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _shuffle(torch.cat([self.a(x), self.b(x)], dim=1), 2)
        return self.fc(h.unflatten(1, (2, 4)).mean((1, 3, 4)))


class _GroupedSplit(nn.Module):
    """A grouped conv's channels split unevenly: its conv groups' equal counts forbid
    dividing them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 1, groups=2)
        self.left, self.right = nn.Conv2d(3, 2, 1), nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.conv(x).split([3, 5], dim=1)
        return (self.left(p) + self.right(q)).mean((2, 3))


def test_what_cannot_follow_shuffled_or_grouped_channels_freezes_them(tmp_path: Path) -> None:
    mixed = analysed(tmp_path, _MixedAfterShuffle(), (3, 4, 4))
    assert "a channel shuffle mixed" in (mixed.group("a").frozen_reason or "")
    grouped = analysed(tmp_path, _GroupedSplit(), (4, 4, 4))
    assert "splits the channels of a grouped convolution" in (
        grouped.group("conv").frozen_reason or ""
    )
