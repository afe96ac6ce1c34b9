"""Measured latency: the timing loop's bounds, the figures a meter reports, the recommendation
under a latency budget (pure functions, on constructed figures), and where a job's
`max_latency_ms` goes. A whole run's figures are checked in tests/engine/test_sweep.py, the
published schema in tests/service/test_result_schemas.py."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from jobs.job_config import Criterion, JobConfig
from pruning.choice import budget_figure, recommend, within_latency
from pruning.config import PruneConfig
from pruning.errors import InvalidConfig
from pruning.latency import LatencyMeter, percentile, time_forward
from pruning.report import plot_tradeoff, write_results
from service.job_schemas import JobCreate
from tests.engine.sample_results import make_results, png_size


def test_percentile_is_numpys_linear_one() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0]
    for q in (0, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_timing_stops_at_the_cap_or_the_budget_after_the_minimum() -> None:
    calls: list[int] = []
    ticks = itertools.count()  # readings of a fake clock

    def fast_clock() -> float:
        return next(ticks) * 1e-6

    times = time_forward(lambda: calls.append(1), lambda: None, max_runs=7, clock=fast_clock)
    assert len(times) == 7 and len(calls) == 7 + 3  # the cap, after three warm-up calls
    slow = time_forward(
        lambda: None, lambda: None, min_runs=4, budget_seconds=2.5, clock=lambda: next(ticks)
    )
    assert len(slow) == 4  # the budget is long spent, but a p90 needs a few runs
    warm: list[int] = []
    time_forward(
        lambda: warm.append(1),
        lambda: None,
        min_runs=2,
        budget_seconds=0.5,
        clock=lambda: next(ticks),
    )
    assert len(warm) == 1 + 2  # one warm-up call outlasted the budget: no more of them
    assert all(t == 1000.0 for t in slow)  # one tick between the readings around a call


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


def test_a_meter_times_batch_size_1_and_the_jobs_batch() -> None:
    rows = (torch.randn(16, 6),)
    latency = LatencyMeter(rows, static_batch=None, budget_seconds=0.05).measure(_Tiny().eval())
    assert latency.batch_1 is not None and latency.batch.size == 16
    for timing in (latency.batch_1, latency.batch):
        assert 0 < timing.median <= timing.p90 and timing.runs >= 5
    published = latency.as_dict()
    assert set(published["batch_1"]) == {"median", "p90", "runs"}
    assert budget_figure(published) == latency.batch_1.median
    # A model exported with a fixed batch of 16 cannot run one row: no batch-1 figure.
    fixed = LatencyMeter(rows, static_batch=16, budget_seconds=0.05).measure(_Tiny().eval())
    assert fixed.batch_1 is None and fixed.as_dict()["batch_1"] is None
    assert budget_figure(fixed.as_dict()) == fixed.batch.median


def test_max_latency_chooses_the_smallest_within_both_budgets() -> None:
    # (metric, parameters): all within a 0.01 drop of 0.9 but #3.
    points = [(0.9, 1000), (0.895, 600), (0.893, 400), (0.7, 100)]
    latencies = [2.0, 1.5, 1.8, 0.2]  # #2 is smaller than #1, but slower
    assert recommend(0.9, points, 0.01, True) == 2  # no latency budget: size alone
    assert recommend(0.9, points, 0.01, True, latencies=latencies, max_latency_ms=1.6) == 1
    assert recommend(0.9, points, 0.01, True, latencies=latencies, max_latency_ms=1.8) == 2
    assert recommend(0.9, points, 0.01, True, latencies=latencies, max_latency_ms=1.0) is None
    # Unmeasured figures never meet a budget; without a budget they do not matter.
    unmeasured = [None, 1.0, None, None]
    assert recommend(0.9, points, 0.01, True, latencies=unmeasured, max_latency_ms=5.0) == 1
    assert recommend(0.9, points, 0.01, True, latencies=unmeasured) == 2
    # Same size and metric: the faster one.
    twins = [(0.9, 500), (0.9, 500)]
    assert recommend(0.9, twins, 0.0, True, latencies=[3.0, 2.0]) == 1
    assert not within_latency(float("nan"), 5.0) and within_latency(None, None)
    with pytest.raises(ValueError, match="latencies"):
        recommend(0.9, points, 0.01, True, latencies=[1.0])


def test_a_jobs_latency_budget_is_stored_and_checked_by_the_engine() -> None:
    job = JobConfig(Criterion.RECONSTRUCTION, max_latency_ms=2.5)
    assert JobConfig.from_json(json.loads(json.dumps(job.to_json()))) == job
    assert "max_latency_ms" not in JobConfig(Criterion.RECONSTRUCTION).to_json()
    assert PruneConfig.of(job, 32, "cpu").max_latency_ms == 2.5
    with pytest.raises(InvalidConfig, match="max_latency_ms must be > 0"):
        PruneConfig(max_latency_ms=0.0)
    with pytest.raises(InvalidConfig, match="needs measured latency"):
        PruneConfig(max_latency_ms=1.0, measure_latency=False)
    body = {"model_id": "m" * 32, "dataset_id": "d" * 32}
    assert JobCreate.model_validate({**body, "max_latency_ms": 2.5}).max_latency_ms == 2.5
    with pytest.raises(ValidationError, match="max_latency_ms"):
        JobCreate.model_validate({**body, "max_latency_ms": 0})


def _timed(median: float) -> dict[str, object]:
    return {
        "batch_1": {"median": median, "p90": median * 1.2, "runs": 50},
        "batch": {"size": 64, "median": median * 20, "p90": median * 25, "runs": 20},
    }


def test_latency_columns_and_the_second_panel(tmp_path: Path) -> None:
    r = make_results()
    candidates = [replace(c, latency_ms=_timed(1.0 - 0.1 * c.index)) for c in r.candidates]
    baseline = replace(r.baseline, latency_ms=_timed(1.2))
    timed = replace(r, candidates=candidates, baseline=baseline, max_latency_ms=0.8)
    write_results(timed, tmp_path)
    rows = (tmp_path / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header.index("latency_1_median_ms") < header.index("kept:fc1")
    base = dict(zip(header, rows[1].split(","), strict=True))
    assert (base["latency_1_median_ms"], base["latency_batch_size"]) == ("1.2", "64")
    assert json.loads((tmp_path / "results.json").read_text())["max_latency_ms"] == 0.8
    one, two = png_size(plot_tradeoff(r, tmp_path / "one.png"))
    width, height = png_size(plot_tradeoff(timed, tmp_path / "two.png"))
    assert width > 1.6 * one and height == two  # a second panel beside the first
