"""The engine as a library: its public names, and a run that uses nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import pruning
from tests.tiny_models import MLP, export_to


def test_every_public_name_resolves() -> None:
    assert sorted(pruning.__all__) == sorted(set(pruning.__all__))
    missing = [name for name in pruning.__all__ if not hasattr(pruning, name)]
    assert missing == []


def test_a_run_through_the_public_api(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = export_to(MLP(), tmp_path / "model.pt2")
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)

    described = pruning.describe_model(path)
    config = pruning.PruneConfig(thresholds=pruning.parse_thresholds("f0.25,f0.5"), batch_size=32)
    results = pruning.run(path, pruning.DataInput.of(x), None, config, tmp_path / "out")

    assert described["parameters"] == results.baseline.parameters
    assert results.metric_name == pruning.Metric.AGREEMENT
    assert [c.threshold for c in results.candidates] == [{"fraction": 0.25}, {"fraction": 0.5}]
    assert all(c.parameters < results.baseline.parameters for c in results.candidates)
    assert all((tmp_path / "out" / c.artifact).exists() for c in results.candidates)
