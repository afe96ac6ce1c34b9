"""The reconstruction criterion: its costs are the output error that linear compensation
leaves, measured directly, and it sees redundancy that statistics alone cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation
from pruning import ranking
from pruning.data import ArrayData, Feeder
from pruning.graph import analyse
from pruning.ranking import _parameters_per_channel, reconstruction_rankings
from pruning.reader import read_program
from pruning.stats import RunningStats, collect
from pruning.surgery import apply_plan
from tests.tiny_models import export_to


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 5)
        return self.fc2(torch.tanh(self.fc1(x)))


def _setup(tmp_path: Path, model: nn.Module):  # type: ignore[no-untyped-def]
    gm = read_program(export_to(model.eval(), tmp_path / "m.pt2", d_in=5)).module()
    analysis = analyse(gm)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 64)
    x = np.random.default_rng(0).normal(size=(400, 5)).astype(np.float32)
    taps = {t: g.width for g in analysis.prunable for t in g.taps}
    stats = collect(gm, taps, feeder(ArrayData(x)), gram=set(taps))
    return gm, analysis, stats, torch.from_numpy(x)


def test_the_first_cost_is_the_output_error_left_after_linear_compensation(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = Pair()
    gm, analysis, stats, x = _setup(tmp_path, model)
    group = analysis.group("fc1")
    (ranking,) = reconstruction_rankings(gm, analysis, stats).values()
    first = ranking.order[0]
    keep = [c for c in range(8) if c != first]
    pruned = apply_plan(gm, analysis, {"fc1": keep}, moments=stats, compensate=Compensation.LINEAR)
    with torch.no_grad():
        error = ((pruned(x) - model(x)).double() ** 2).sum(dim=1).mean()  # per sample
        h = torch.tanh(model.fc1(x)).double()
        w = model.fc2.weight.double()
        energy = ((h - h.mean(0)) @ w.T).pow(2).sum(dim=1).mean()  # tr(W Σ Wᵀ)
    per_channel = _parameters_per_channel(gm, group)
    assert per_channel == 5 + 1 + 3  # fc1's row and bias, fc2's column
    measured = float(error / energy / per_channel)
    assert abs(ranking.cost[0] - measured) <= 1e-6 * max(measured, 1e-12) + 1e-9


def test_of_two_twins_one_goes_first_and_the_other_becomes_expensive(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = Pair()
    with torch.no_grad():  # neurons 2 and 6 are the same neuron, and carry a lot
        model.fc1.weight[2] *= 3
        model.fc1.weight[6] = model.fc1.weight[2]
        model.fc1.bias[6] = model.fc1.bias[2]
    gm, analysis, stats, _ = _setup(tmp_path, model)
    (ranking,) = reconstruction_rankings(gm, analysis, stats).values()
    first_twin = min(ranking.order.index(2), ranking.order.index(6))
    second_twin = max(ranking.order.index(2), ranking.order.index(6))
    assert first_twin == 0 and ranking.cost[0] < 1e-6  # a twin is free: the other rebuilds it
    assert second_twin > 3  # then the survivor carries the signal alone
    assert ranking.cost == sorted(ranking.cost)  # one order merges across groups
    assert len(ranking.order) == 7  # the last neuron never goes


def test_a_tall_consumer_ranks_as_its_full_weight_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """A convolution's columns over its kernel positions make W tall (rows > C); the greedy
    steps run on R of W = QR instead. Same order, same costs as on W itself."""
    g = torch.Generator().manual_seed(0)
    width = 12
    w = torch.randn(60, width, dtype=torch.float64, generator=g)
    x = torch.randn(500, width, dtype=torch.float64, generator=g)
    x[:, 5] = 2 * x[:, 3] + 0.01 * x[:, 5]  # nearly a copy: cheap once, then expensive
    cov = torch.cov(x.T, correction=0)
    energy = float(((w @ cov) * w).sum())
    readers: list[tuple[torch.Tensor, torch.Tensor | None, RunningStats, float]] = [
        (w, cov, RunningStats(channels=width), energy)
    ]
    fast = ranking._greedy(width, readers, 3.0, lambda: None)
    monkeypatch.setattr(ranking, "_compact", lambda m: m.clone())
    full = ranking._greedy(width, readers, 3.0, lambda: None)
    assert fast.order == full.order
    torch.testing.assert_close(
        torch.tensor(fast.cost), torch.tensor(full.cost), rtol=1e-9, atol=1e-15
    )
