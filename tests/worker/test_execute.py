"""The task bodies against real stores (SQLite, files): outcomes, publication, cancellation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.blobs import BlobStore
from jobs.records import JobRecord
from jobs.settings import Settings
from jobs.states import JobStatus, ModelStatus
from jobs.store import JobStore
from tests.tiny_models import export_to
from worker.execute import execute_inspection, execute_job

TENANT = "default"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class World:
    """A job store, a blob store and settings in one temporary data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = Settings(data_dir=root, batch_size=32, device="cpu")
        self.settings.ensure_dirs()
        self.store = JobStore(self.settings.resolved_database_url())
        self.store.migrate()
        self.blobs = BlobStore(self.settings.resolved_data_dir())

    def model(self, path: Path) -> str:
        sha, size = self.blobs.put_file(path)
        return self.store.add_model(TENANT, sha, size, path.name).id

    def npz(self, samples: int = 200, labels: bool = True) -> str:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(samples, 5)).astype(np.float32)
        path = self.root / f"data-{samples}.npz"
        if labels:
            np.savez(path, x=x, y=rng.integers(0, 3, size=samples))
        else:
            np.savez(path, x=x)
        sha, size = self.blobs.put_file(path)
        return self.store.add_dataset(
            TENANT, sha, size, path.name, "npz", samples, [5], labels, None
        ).id

    def job(self, model_id: str, dataset_id: str, **config: object) -> JobRecord:
        body = {
            "criterion": "variance",
            "thresholds": [{"fraction": 0.25}, {"fraction": 0.5}],
            "compensate": True,
            "metric": "accuracy",
            "max_metric_drop": 0.01,
        }
        body.update(config)
        return self.store.add_job(TENANT, model_id, dataset_id, None, body)

    def run(self, job_id: str) -> JobRecord:
        execute_job(job_id, self.store, self.blobs, self.settings)
        record = self.store.get_job(TENANT, job_id)
        assert record is not None
        return record


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "data")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return export_to(Net(), tmp_path / "net.pt2", d_in=5)


def test_a_job_runs_to_success_and_publishes_its_files(world: World, model_file: Path) -> None:
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.stage == "done" and job.fraction == 1.0
    names = {a.name for a in world.blobs.list_artifacts(job.id)}
    assert {"results.json", "stats.json", "pruned-0.pt2", "pruned-1.pt2", "tradeoff.png"} <= names
    leftovers = [p.name for p in world.blobs.jobs_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staging folder was renamed into place


def test_a_search_job_with_recovery_runs_in_the_sandbox(world: World, model_file: Path) -> None:
    config = {
        "criterion": "reconstruction",
        "thresholds": None,
        "compensate": "linear",
        "allocation": "uniform",
        "recovery": {"epochs": 1, "lr": 0.001, "max_seconds": 60, "batch_size": 32},
        "search": True,
        "seed": 5,
        "max_metric_drop": 0.05,
    }
    job = world.run(world.job(world.model(model_file), world.npz(), **config).id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    path = world.blobs.artifact_path(job.id, "results.json")
    assert path is not None
    results = json.loads(path.read_text())
    assert results["search"] is True and len(results["candidates"]) == 6
    assert (results["compensate"], results["allocation"]) == ("linear", "uniform")
    assert results["data"]["holdout"] == {
        "fraction": 0.2,
        "seed": 5,
        "samples": 40,
        "rule": "numpy.random.default_rng(seed).permutation(samples)[:held] are held out",
    }
    for candidate in results["candidates"]:
        if candidate["same_as"] is None:
            assert candidate["recovery"]["steps"] == 5  # 160 rows in batches of 32
            assert candidate["metric_before_recovery"] is not None


def test_a_second_delivery_does_nothing(world: World, model_file: Path) -> None:
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    before = (world.blobs.job_dir(job.id) / "results.json").read_bytes()
    again = world.run(job.id)
    assert again.status is JobStatus.SUCCEEDED and again.attempts == 1
    assert (world.blobs.job_dir(job.id) / "results.json").read_bytes() == before


def test_a_bad_model_fails_with_a_reason(world: World, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip at all")
    job = world.run(world.job(world.model(junk), world.npz()).id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "torch.export.save" in job.error
    assert world.blobs.list_artifacts(job.id) == []


def test_accuracy_without_labels_fails_with_a_reason(world: World, model_file: Path) -> None:
    job = world.run(world.job(world.model(model_file), world.npz(labels=False)).id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "needs labels" in job.error


def test_a_csv_dataset_with_a_label_column(world: World, model_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["a,b,c,d,e,label"] + [
        ",".join(f"{v:.4f}" for v in rng.normal(size=5)) + f",{rng.integers(0, 3)}"
        for _ in range(60)
    ]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    sha, size = world.blobs.put_file(path)
    data = world.store.add_dataset(TENANT, sha, size, "d.csv", "csv", 60, [5], True, "label")
    job = world.run(world.job(world.model(model_file), data.id).id)
    assert job.status is JobStatus.SUCCEEDED, job.error


def test_a_job_cancelled_while_queued_never_starts(world: World, model_file: Path) -> None:
    job = world.job(world.model(model_file), world.npz())
    world.store.request_cancel(TENANT, job.id)
    after = world.run(job.id)
    assert after.status is JobStatus.CANCELLED and after.attempts == 0


def test_a_running_job_stops_when_cancelled(world: World, model_file: Path) -> None:
    job = world.job(
        world.model(model_file),
        world.npz(samples=60_000),
        thresholds=[{"fraction": f / 20} for f in range(1, 20)],
    )
    runner = threading.Thread(target=world.run, args=(job.id,))
    runner.start()
    deadline = time.monotonic() + 60
    while world.store.get_job(TENANT, job.id).status is JobStatus.QUEUED:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled_at = time.monotonic()
    world.store.request_cancel(TENANT, job.id)
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert time.monotonic() - cancelled_at < 10
    final = world.store.get_job(TENANT, job.id)
    assert final is not None and final.status is JobStatus.CANCELLED
    assert not world.blobs.job_dir(job.id).exists()
    assert [p for p in world.blobs.jobs_dir.iterdir()] == []  # partial files removed


def test_inspection_marks_models_ready_or_invalid(
    world: World, model_file: Path, tmp_path: Path
) -> None:
    good = world.model(model_file)
    execute_inspection(good, world.store, world.blobs, world.settings)
    record = world.store.get_model(TENANT, good)
    assert record is not None and record.status is ModelStatus.READY
    assert record.info is not None
    assert record.info["layers"] == [{"name": "fc1", "width": 16, "kind": "linear"}]
    assert record.info["inputs"] == [{"name": "x", "shape": [None, 5], "dtype": "float32"}]

    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"PK\x03\x04 broken")
    bad = world.model(junk)
    execute_inspection(bad, world.store, world.blobs, world.settings)
    record = world.store.get_model(TENANT, bad)
    assert record is not None and record.status is ModelStatus.INVALID and record.error
