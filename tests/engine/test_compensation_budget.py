"""Linear compensation's memory bound in a whole run: groups past the Gram limit fold means."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.job_config import Compensation
from pruning.config import PruneConfig, Threshold
from pruning.sweep import run
from tests.engine.blob_classifier import Trained, data, train_blob_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_blob_classifier(tmp_path_factory.mktemp("m"))


def test_groups_past_the_gram_limit_fall_back_to_mean_folding(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import pruning.compensation

    path, x, y = trained
    monkeypatch.setattr(pruning.compensation, "MAX_GRAM_WIDTH", 32)  # both groups are 64 wide
    metrics = {}
    for mode in (Compensation.LINEAR, Compensation.MEAN):
        out = tmp_path / mode.value
        out.mkdir()
        config = PruneConfig(
            thresholds=(Threshold(fraction=0.6),), compensate=mode, measure_latency=False
        )
        evaluation = data(x[600:], y[600:])
        metrics[mode] = (
            run(path, data(x[:600], y[:600]), evaluation, config, out).candidates[0].metric
        )
    assert metrics[Compensation.LINEAR] == metrics[Compensation.MEAN]
