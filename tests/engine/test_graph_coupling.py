"""Coupling: a residual add or a gate (x * s) unites the groups on both sides, so one cut
removes both; a concatenation of tokens couples its parts; stored tensors that meet the
channels (layer scale, position embedding, class token) are sliced with them; anything
else meeting the channels elementwise freezes them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.engine.graph_helpers import analysed, readers, sliced


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.head(h + self.fc2(torch.relu(h)))


class Gate(nn.Module):
    """Squeeze-and-excitation: the conv's channels scaled by a gate computed from them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = nn.Conv2d(8, 2, 1)
        self.excite = nn.Conv2d(2, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 4, 4)
        h = self.conv(x)
        s = torch.sigmoid(self.excite(torch.relu(self.squeeze(h.mean((2, 3), keepdim=True)))))
        return self.fc((h * s).mean((2, 3)))


class Broadcast(nn.Module):
    """(N, 8) + (N, 1): two groups meet, but not channel by channel."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 1)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.head(h + self.fc2(h))


class AddInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) + x)


class Tokens(nn.Module):
    """Class token, position embedding, layer scale: stored tensors meeting the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.extra = nn.Linear(6, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(1, 9, 8))
        self.gamma = nn.Parameter(torch.rand(8))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 4, 6)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x), self.extra(x)], 1)
        t = self.gamma * (t + self.pos)  # (N, 9, 8)
        return self.head(t[:, 0])


def test_a_residual_add_couples_both_sides(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Residual(), 6)
    stream = analysis.group("fc1")
    assert stream.members == ["fc1", "fc2"]
    assert stream.prunable
    assert readers(stream) == ["fc2.weight", "head.weight"]
    assert [p.path for p in stream.producers] == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert "fc2" not in [g.name for g in analysis.groups]  # one group, cut alike


def test_a_gate_couples_the_gated_channels_with_the_gate(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Gate(), (3, 4, 4))
    gated = analysis.group("conv")
    assert gated.members == ["conv", "excite"]
    assert gated.prunable
    assert readers(gated) == ["squeeze.weight", "fc.weight"]
    assert analysis.group("squeeze").prunable


def test_groups_meeting_by_broadcast_freeze(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Broadcast(), 6)
    for name in ("fc1", "fc2"):
        reason = analysis.group(name).frozen_reason or ""
        assert "combines channels laid out differently" in reason


def test_channels_meeting_a_tensor_not_cut_alongside_freeze(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, AddInput(), 6)
    reason = analysis.group("fc1").frozen_reason or ""
    assert "combines these channels with a tensor that is not cut alongside" in reason


def test_tokens_couple_and_stored_tensors_are_sliced_with_the_channels(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, Tokens(), (4, 6))
    tokens = analysis.group("embed")
    assert tokens.members == ["embed", "extra"]  # concatenated along the tokens
    assert tokens.prunable
    assert sliced(tokens) == ["cls", "pos", "gamma"]
    assert readers(tokens) == ["head.weight"]
