"""Pass-through: activations, dropout, pooling and reductions over other dims carry the
channels unchanged; pooling or reducing over the channels themselves freezes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pruning.graph import Span
from tests.engine.graph_helpers import analysed, readers
from tests.tiny_models import MLP

ACTS = [nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardswish, nn.LeakyReLU]


class PooledConv(nn.Module):
    """conv -> max-pool -> avg-pool -> mean over the spatial dims -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 8, 8)
        h = nn.functional.avg_pool2d(nn.functional.max_pool2d(self.conv(x), 2), 2)
        return self.fc(h.mean((2, 3)))  # (N, 6) -> (N, 2)


class PoolOverChannels(nn.Module):
    """Linear features pooled pairwise: the pool window runs along the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool1d(self.fc1(x).unsqueeze(1), 2)  # (N, 1, 4)
        return self.fc2(h.flatten(1))


class MeanOverChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 4, 4)
        return self.fc(self.conv(x).mean(1).flatten(1))  # (N, 16)


class BatchSized(nn.Module):
    """A reshape that reads the batch size: the size is bookkeeping, not a value."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h.reshape(h.shape[0], -1))


@pytest.mark.parametrize("act", ACTS)
def test_activations_and_dropout_carry_the_channels(tmp_path: Path, act: type[nn.Module]) -> None:
    analysis = analysed(tmp_path, MLP(act=act), 6)
    assert [g.name for g in analysis.prunable] == ["fc1", "fc2"]
    assert readers(analysis.group("fc1")) == ["fc2.weight"]  # through BN, act and Dropout
    assert readers(analysis.group("fc2")) == ["out.weight"]


class InPlaceDropout(nn.Module):
    """torchvision's classifier heads (MobileNetV3, EfficientNet, MNASNet): in-place ops."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.Hardswish(inplace=True)
        self.drop = nn.Dropout(0.2, inplace=True)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))  # hardswish_, dropout_


def test_in_place_dropout_carries_the_channels(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, InPlaceDropout(), 6)
    assert [g.name for g in analysis.prunable] == ["fc1"]
    assert readers(analysis.group("fc1")) == ["fc2.weight"]


def test_pooling_and_means_over_other_dims_keep_the_channels(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, PooledConv(), (3, 8, 8))
    conv = analysis.group("conv")
    assert conv.prunable
    assert readers(conv) == ["fc.weight"]
    assert [c.tap.span for c in conv.consumers] == [Span(1)]  # (N, C) after the mean


def test_pooling_over_the_channels_freezes_them(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, PoolOverChannels(), 6)
    assert "pools over these channels" in (analysis.group("fc1").frozen_reason or "")


def test_a_mean_over_the_channels_freezes_them(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, MeanOverChannels(), (3, 4, 4))
    assert "reduces over these channels" in (analysis.group("conv").frozen_reason or "")


def test_reading_the_batch_size_freezes_nothing(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, BatchSized(), 6)
    assert [g.name for g in analysis.prunable] == ["fc1"]
    assert readers(analysis.group("fc1")) == ["fc2.weight"]
