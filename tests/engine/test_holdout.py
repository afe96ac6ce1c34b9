"""The hold-out split: what a run fits on is never what it scores on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.job_config import Compensation
from pruning.config import PruneConfig, Recovery, Threshold
from pruning.data import ArrayData
from pruning.holdout import Subset, holdout_mask
from pruning.reader import read_program
from pruning.sweep import run
from tests.engine.blob_classifier import Trained, data, train_blob_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_blob_classifier(tmp_path_factory.mktemp("m"))


def test_linear_compensation_without_eval_data_is_scored_on_held_out_rows(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    results = run(
        path,
        data(x, y),
        None,
        PruneConfig(thresholds=(Threshold(fraction=0.5),), measure_latency=False),
        tmp_path,
    )
    assert results.data["evaluation"] == "dataset, held-out rows"
    assert "training" not in results.data and results.data["holdout"]["samples"] == 160
    (tmp_path / "mean").mkdir()
    config = PruneConfig(
        thresholds=(Threshold(fraction=0.5),), compensate=Compensation.MEAN, measure_latency=False
    )
    plain = run(path, data(x, y), None, config, tmp_path / "mean")
    assert plain.data == {"statistics": "dataset", "evaluation": "dataset"}  # nothing fitted


def test_recovery_without_eval_data_holds_out_a_seeded_part(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(
        thresholds=(Threshold(fraction=0.5),), recovery=Recovery(epochs=1), measure_latency=False
    )
    results = run(path, data(x, y), None, config, tmp_path)
    holdout = results.data["holdout"]
    assert holdout["samples"] == 160 and holdout["seed"] == 0
    assert results.data["training"] == "dataset, rows not held out"
    published = json.loads((tmp_path / "results.json").read_text())
    assert published["data"]["holdout"]["samples"] == 160
    assert published["recovery"]["epochs"] == 1
    # The baseline is scored on the held-out rows only.
    mask = holdout_mask(800, 0.2, seed=0)
    model = read_program(path).module()
    with torch.no_grad():
        pred = model(torch.from_numpy(x[mask])).argmax(-1).numpy()
    assert results.baseline.metric == pytest.approx(float((pred == y[mask]).mean()))


def test_a_subset_yields_full_batches_of_its_rows_in_order() -> None:
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25)
    mask = holdout_mask(25, 0.4, seed=1)
    batches = list(Subset(ArrayData(x, y), mask).batches(4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]  # 10 rows held out
    got = np.concatenate([b[1] for b in batches if b[1] is not None])
    assert got.tolist() == np.flatnonzero(mask).tolist()
    assert np.concatenate([b[0] for b in batches]).tolist() == x[mask].tolist()
