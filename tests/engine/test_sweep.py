"""A whole run: the numbers reported for a candidate are those of the file a user downloads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Criterion, Metric
from pruning.config import PruneConfig, Threshold
from pruning.data import ArrayData
from pruning.errors import Cancelled, InvalidConfig
from pruning.latency import Latency, LatencyMeter
from pruning.sweep import DataInput, run
from tests.engine.report_page import assert_report_of
from tests.tiny_models import export_to


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.fc2 = nn.Linear(32, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A classifier trained for a moment on three Gaussian blobs."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, size=600)
    x = (centers[y] + rng.normal(size=(600, 8))).astype(np.float32)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    path = export_to(model.eval(), tmp_path_factory.mktemp("m") / "model.pt2", d_in=8)
    return path, x, y


def _data(x: np.ndarray, y: np.ndarray | None) -> DataInput:
    return DataInput(ArrayData(x, y), len(x), y is not None)


def test_reported_numbers_are_those_of_the_downloaded_artifacts(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    thresholds = (Threshold(fraction=0.2), Threshold(fraction=0.5), Threshold(mean=0.05, std=0.05))
    config = PruneConfig(
        criterion=Criterion.SEED,
        thresholds=thresholds,
        compensate=True,
        batch_size=50,
        measure_latency=False,  # timed below (test_identical_keep_sets_...), not here
    )
    results = run(path, _data(x, y), None, config, tmp_path)
    assert results.metric_name == "accuracy"
    assert [c.index for c in results.candidates] == [0, 1, 2]
    xt = torch.from_numpy(x)
    for cand in results.candidates:
        artifact = torch.export.load(tmp_path / cand.artifact)  # trusted: written by the engine
        params = sum(p.numel() for p in artifact.parameters())
        acc = float((artifact.module()(xt).argmax(-1).numpy() == y).mean())
        assert cand.parameters == params
        assert cand.metric == pytest.approx(acc, abs=1e-9)
        assert cand.bytes == (tmp_path / cand.artifact).stat().st_size
        assert cand.metric_drop == pytest.approx(results.baseline.metric - acc)
        assert cand.size_reduction == pytest.approx(1 - params / results.baseline.parameters)
        assert list(cand.kept) == ["fc1", "fc2"]
    published = json.loads((tmp_path / "results.json").read_text())
    assert published["candidates"][1]["parameters"] == results.candidates[1].parameters
    for name in (
        "results.csv",
        "stats.json",
        "stats.csv",
        "stats.png",
        "tradeoff.png",
        "plans.json",
    ):
        assert (tmp_path / name).stat().st_size > 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [layer["name"] for layer in stats["layers"]] == ["fc1", "fc2"]
    assert_report_of(tmp_path)  # the table, and a link to every file this run wrote


def test_identical_keep_sets_are_evaluated_once(  # type: ignore[no-untyped-def]
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, x, y = trained
    timed: list[object] = []
    measure = LatencyMeter.measure

    def counted(meter: LatencyMeter, module: object) -> Latency:
        timed.append(module)
        return measure(meter, module)  # type: ignore[arg-type]

    monkeypatch.setattr(LatencyMeter, "measure", counted)
    thresholds = (Threshold(fraction=0.25), Threshold(fraction=0.25), Threshold(fraction=0.0))
    results = run(path, _data(x, y), None, PruneConfig(thresholds=thresholds), tmp_path)
    first, again, none = results.candidates
    assert again.same_as == 0 and again.artifact == first.artifact and again.metric == first.metric
    assert not (tmp_path / "pruned-1.pt2").exists()
    assert none.parameters == results.baseline.parameters
    # Latency: measured for the baseline and each distinct keep-set, once; shared by twins.
    assert len(timed) == 3 and again.latency_ms == first.latency_ms
    for latency in (results.baseline.latency_ms, first.latency_ms, none.latency_ms):
        assert latency is not None
        assert 0 < latency["batch_1"]["median"] <= latency["batch_1"]["p90"]
        # The job batch (256), or the whole evaluation part (held out: 120 rows) if smaller.
        assert latency["batch"]["size"] == 120 and latency["batch"]["median"] > 0
    assert results.latency is not None and results.latency["threads"] >= 1


def test_agreement_without_labels_and_keep_all_agrees_fully(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, _ = trained
    results = run(
        path,
        _data(x, None),
        None,
        PruneConfig(thresholds=(Threshold(fraction=0.0),), measure_latency=False),
        tmp_path,
    )
    assert results.metric_name == "agreement"
    assert results.baseline.metric == 1.0
    assert results.candidates[0].metric == 1.0
    assert results.recommended == 0


def test_accuracy_without_labels_is_refused(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, _ = trained
    with pytest.raises(InvalidConfig, match="needs labels"):
        run(path, _data(x, None), None, PruneConfig(metric=Metric.ACCURACY), tmp_path)


def test_cancellation_stops_the_run(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    with pytest.raises(Cancelled):
        run(
            path,
            _data(x, y),
            None,
            PruneConfig(batch_size=10),
            tmp_path,
            should_cancel=lambda: True,
        )


def test_a_model_with_nothing_prunable_gives_an_empty_table(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    path = export_to(model, tmp_path / "single.pt2", d_in=4)
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    out = tmp_path / "out"
    out.mkdir()
    results = run(path, _data(x, None), None, PruneConfig(), out)
    assert results.candidates == [] and results.recommended is None
    assert results.frozen and "nothing in this model can be pruned" in results.notes[0]
    assert (out / "results.json").exists()
