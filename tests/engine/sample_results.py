"""A small sweep's results and statistics, made by hand, for the tests of what a job publishes
(`tests/engine/test_report_*.py`): five candidates over three layers, one a duplicate."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from pruning.choice import pareto_front, recommend
from pruning.results import Baseline, Candidate, LayerStats, Results

WIDTHS = {"fc1": 128, "fc2": 64, "layer1.0.conv1": 32}


def _candidate(
    index: int,
    threshold: dict[str, float],
    metric: float,
    kept: dict[str, int],
    baseline: Baseline,
    same_as: int | None = None,
) -> Candidate:
    # Parameters of an MLP 10 -> fc1 -> fc2 -> conv-ish -> 3, roughly.
    params = 10 * kept["fc1"] + kept["fc1"] * kept["fc2"] + kept["fc2"] * kept["layer1.0.conv1"]
    params += kept["layer1.0.conv1"] * 3
    return Candidate(
        index=index,
        threshold=threshold,
        metric=metric,
        metric_drop=baseline.metric - metric,
        parameters=params,
        bytes=params * 4 + 1000,
        macs=params,
        size_reduction=1 - params / baseline.parameters,
        kept=kept,
        kept_fraction={k: v / WIDTHS[k] for k, v in kept.items()},
        artifact=f"pruned-{index}.pt2",
        same_as=same_as,
    )


def make_results(
    metric_name: str = "accuracy", thresholds: list[dict[str, float]] | None = None
) -> Results:
    full = WIDTHS
    base_params = 10 * 128 + 128 * 64 + 64 * 32 + 32 * 3
    baseline = Baseline(metric=0.967, parameters=base_params, bytes=base_params * 4, macs=1)
    thresholds = thresholds or [
        {"mean": 0.1, "std": 0.4},
        {"mean": 0.5, "std": 1.0},
        {"fraction": 0.2},
        {"fraction": 0.4},
        {"fraction": 0.6},
    ]
    kepts = [
        {"fc1": 120, "fc2": 60, "layer1.0.conv1": 30},
        {"fc1": 90, "fc2": 40, "layer1.0.conv1": 30},
        {"fc1": 120, "fc2": 60, "layer1.0.conv1": 30},  # same keep-set as #0
        {"fc1": 70, "fc2": 40, "layer1.0.conv1": 20},
        {"fc1": 40, "fc2": 20, "layer1.0.conv1": 10},
    ]
    metrics = [0.966, 0.962, 0.966, 0.951, 0.80]
    candidates = [
        _candidate(i, t, m, k, baseline, same_as=0 if i == 2 else None)
        for i, (t, m, k) in enumerate(zip(thresholds, metrics, kepts, strict=True))
    ]
    points = [(c.metric, c.parameters) for c in candidates]
    return Results(
        metric_name=metric_name,
        criterion="seed",
        compensate=True,
        max_metric_drop=0.005,
        baseline=baseline,
        candidates=candidates,
        pareto=pareto_front(points, True),
        recommended=recommend(baseline.metric, points, 0.005, True),
        layers=list(full),
        frozen=[{"name": "head", "reason": "model output"}],
        notes=["a note"],
    )


def make_stats() -> list[LayerStats]:
    rng = np.random.default_rng(0)
    layers = []
    for name, n in WIDTHS.items():
        mean = rng.normal(scale=2.0, size=n)
        std = np.abs(rng.normal(scale=1.0, size=n)) * 10.0 ** rng.uniform(-3, 0, size=n)
        mean[:5], std[:5] = 0.0, 0.0  # dead ReLUs
        zero = rng.uniform(size=n)
        zero[:5] = 1.0
        layers.append(
            LayerStats(
                name=name,
                neurons=n,
                count=1000,
                mean=mean.tolist(),
                std=std.tolist(),
                abs_mean=np.abs(mean).tolist(),
                zero_fraction=zero.tolist(),
                min=(mean - 3 * std).tolist(),
                max=(mean + 3 * std).tolist(),
            )
        )
    return layers


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
