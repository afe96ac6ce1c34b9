"""Linear compensation: exact for affine channels, mean folding for constant ones, and the
Gram matrices it is computed from equal the direct product over every activation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation
from pruning.data import ArrayData, Feeder
from pruning.graph import analyse
from pruning.reader import read_program
from pruning.stats import RunningStats, collect
from pruning.surgery import apply_plan
from tests.tiny_models import export_to

REMOVED = [4, 5]


def _affine_rows(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Make outputs 4 and 5 affine in outputs 0..3: x4 = 2 x0 - x1 + 0.3, x5 = x2 + 0.5 x3 - 1."""
    with torch.no_grad():
        weight[4] = 2 * weight[0] - weight[1]
        bias[4] = 2 * bias[0] - bias[1] + 0.3
        weight[5] = weight[2] + 0.5 * weight[3]
        bias[5] = bias[2] + 0.5 * bias[3] - 1.0


class LinearPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 5)
        return self.fc2(self.fc1(x))  # fc2 reads fc1's 8 outputs as they are


class ConvPair(nn.Module):
    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 8, 8)
        return self.conv2(self.conv1(x))  # (N, 4, 8, 8)


def _cut(tmp_path: Path, model: nn.Module, shape: tuple[int, ...], mode: Compensation):
    gm = read_program(export_to(model.eval(), tmp_path / "m.pt2", d_in=shape)).module()
    analysis = analyse(gm)
    (group,) = analysis.prunable
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 32)
    x = np.random.default_rng(0).normal(size=(200, *shape)).astype(np.float32)
    taps = {t: group.width for t in group.taps}
    stats = collect(gm, taps, feeder(ArrayData(x)), gram=set(taps))
    keep = [c for c in range(group.width) if c not in REMOVED]
    return apply_plan(gm, analysis, {group.name: keep}, moments=stats, compensate=mode)


def test_linear_compensation_is_exact_for_affine_channels_read_by_a_linear_layer(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = LinearPair()
    _affine_rows(model.fc1.weight, model.fc1.bias)
    pruned = _cut(tmp_path, model, (5,), Compensation.LINEAR)
    assert pruned.get_parameter("fc2.weight").shape == (3, 6)
    x = torch.randn(64, 5)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=0, atol=1e-5)
        mean_only = _cut(tmp_path, model, (5,), Compensation.MEAN)
        assert (mean_only(x) - model(x)).abs().max() > 1e-2  # the mean alone is not enough


@pytest.mark.parametrize("kernel", [1, 3])
def test_linear_compensation_is_exact_for_convolutions_away_from_borders(
    tmp_path: Path, kernel: int
) -> None:
    torch.manual_seed(kernel)
    model = ConvPair(kernel)
    _affine_rows(model.conv1.weight, model.conv1.bias)
    pruned = _cut(tmp_path, model, (3, 8, 8), Compensation.LINEAR)
    x = torch.randn(16, 3, 8, 8)
    with torch.no_grad():
        got, want = pruned(x), model(x)
    inner = slice(1, -1) if kernel == 3 else slice(None)  # a padded border sees zeros there
    torch.testing.assert_close(got[..., inner, inner], want[..., inner, inner], rtol=0, atol=1e-5)
    if kernel == 3:  # at the border only the constant part (W_R b) is off
        assert (got - want).abs().max() > 1e-3


def test_linear_equals_mean_folding_for_constant_channels(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = LinearPair()
    with torch.no_grad():
        model.fc1.weight[REMOVED] = 0.0
        model.fc1.bias[REMOVED] = torch.tensor([0.7, -1.2])
    linear = _cut(tmp_path, model, (5,), Compensation.LINEAR)
    mean = _cut(tmp_path, model, (5,), Compensation.MEAN)
    x = torch.randn(64, 5)
    with torch.no_grad():
        torch.testing.assert_close(linear(x), mean(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(linear(x), model(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(
        linear.get_parameter("fc2.weight"), mean.get_parameter("fc2.weight"), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_gram_equals_the_product_over_all_activations(batch: int) -> None:
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(300, 2, 6, generator=g, dtype=torch.float64) * 3 + 1.5  # (N, T, C)
    s = RunningStats(channels=6, track_gram=True)
    for chunk in x.split(batch):
        s.update(chunk)
    flat = x.reshape(-1, 6)  # every position is a sample
    n = flat.shape[0]
    torch.testing.assert_close(s.gram, flat.T @ flat / n, rtol=1e-10, atol=1e-10)
    centred = flat - flat.mean(0)
    torch.testing.assert_close(s.covariance, centred.T @ centred / n, rtol=1e-10, atol=1e-10)
    halves = [RunningStats(channels=6, track_gram=True) for _ in range(2)]
    halves[0].update(flat[:250])
    halves[1].update(flat[250:])
    torch.testing.assert_close(halves[0].merged(halves[1]).gram, s.gram, rtol=1e-10, atol=1e-10)


def test_collected_gram_of_a_conv_tap_pools_batch_and_positions(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = ConvPair(3).eval()
    gm = read_program(export_to(model, tmp_path / "m.pt2", d_in=(3, 8, 8))).module()
    analysis = analyse(gm)
    (group,) = analysis.prunable
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 13)
    x = np.random.default_rng(1).normal(size=(50, 3, 8, 8)).astype(np.float32)
    tap = group.taps[0]
    stats = collect(gm, {tap: 8}, feeder(ArrayData(x)), gram={tap})[tap]
    with torch.no_grad():
        act = model.conv1(torch.from_numpy(x)).double()  # (N, 8, H, W)
    flat = act.movedim(1, -1).reshape(-1, 8)
    torch.testing.assert_close(stats.gram, flat.T @ flat / flat.shape[0], rtol=1e-6, atol=1e-6)
