"""The task bodies against real stores (SQLite, files): outcomes, publication, cancellation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import update
from torch import nn

from jobs.blobs import BlobStore
from jobs.lifecycle import is_complete, write_manifest
from jobs.records import JobRecord
from jobs.settings import Settings
from jobs.states import JobStatus, ModelStatus
from jobs.store import JobStore
from jobs.tables import JobRow, utcnow
from tests.tiny_models import export_to
from worker.execute import execute_inspection, execute_job
from worker.messages import scrub

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


def test_an_inspection_message_serves_the_tenant_waiting_longest(
    world: World, model_file: Path
) -> None:
    # One tenant uploaded a backlog; its first model is being inspected right now.
    sha, size = world.blobs.put_file(model_file)
    backlog = [world.store.add_model("busy", sha, size, f"{i}.pt2").id for i in range(3)]
    assert world.store.claim_fair_inspection(backlog[0], 600) is not None
    newcomer = world.store.add_model("quiet", sha, size, "q.pt2").id
    # The next message names busy's second model; quiet's first one goes first.
    execute_inspection(backlog[1], world.store, world.blobs, world.settings)
    inspected = world.store.get_model("quiet", newcomer)
    assert inspected is not None and inspected.status is ModelStatus.READY
    waiting = world.store.get_model("busy", backlog[1])
    assert waiting is not None and waiting.status is ModelStatus.PENDING


# -- crashes, outages of the disk, limits and messages (issue 10) -----------------------------
def _attempt_folders(world: World) -> list[str]:
    return [p.name for p in world.blobs.jobs_dir.iterdir() if p.name.startswith(".")]


def test_a_published_result_set_is_the_outcome_of_the_next_attempt(
    world: World, model_file: Path
) -> None:
    # Attempt 1 published its folder, then its worker died before recording success.
    model_id = world.model(model_file)
    job = world.run(world.job(model_id, world.npz()).id)
    results = world.blobs.job_dir(job.id) / "results.json"
    written = results.stat().st_mtime_ns
    with world.store._session() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id == job.id)
            .values(status="running", lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert world.store.reap_expired(max_attempts=3).requeued == [job.id]
    model = world.store.get_model(TENANT, model_id)
    assert model is not None
    world.blobs.delete(model.sha256)  # a second run of the engine would fail without it
    again = world.run(job.id)
    assert again.status is JobStatus.SUCCEEDED and again.error is None, again.error
    assert again.attempts == 2 and results.stat().st_mtime_ns == written  # not re-run
    assert _attempt_folders(world) == []


def test_an_incomplete_published_folder_is_not_an_outcome(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    assert write_manifest(folder) == 2 and is_complete(folder)
    (folder / "pruned-0.pt2").write_bytes(b"extra")  # not in the manifest
    assert not is_complete(folder)
    (folder / "pruned-0.pt2").unlink()
    (folder / "results.json").write_text("{ }")  # another size
    assert not is_complete(folder)


def test_an_internal_error_names_an_incident_not_its_text(
    world: World, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A stored configuration the engine cannot take (a TypeError deep inside it).
    job = world.job(world.model(model_file), world.npz(), thresholds=[{"bogus": 1}])
    job = world.run(job.id)
    assert job.status is JobStatus.FAILED and job.error is not None
    match = re.fullmatch(
        r"internal error in the engine \(incident ([0-9a-f]{12})\); the operator can find "
        r"the details in the worker log",
        job.error,
    )
    assert match, job.error
    logged = [r.getMessage() for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and "TypeError" in logged[0] and "bogus" in logged[0]  # details, same ID
    assert _attempt_folders(world) == []


def test_a_refusal_names_the_upload_not_its_path(world: World, model_file: Path) -> None:
    dataset_id = world.npz()
    record = world.store.get_dataset(TENANT, dataset_id)
    assert record is not None
    world.blobs.path(record.sha256).unlink()  # the reader meets a FileNotFoundError
    job = world.run(world.job(world.model(model_file), dataset_id).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert str(world.root) not in job.error and record.sha256 not in job.error
    assert "data-200.npz" in job.error
    assert _attempt_folders(world) == []


def test_a_message_that_reaches_a_user_has_no_data_paths_or_addresses(tmp_path: Path) -> None:
    blob = tmp_path / "blobs" / "ab" / ("ab" * 32)
    message = (
        f"cannot read {blob}: bad entry at <object at 0x7f3a2b4c5d60> "
        f"(see {tmp_path}/jobs/.x.attempt-1/tmp/file)"
    )
    clean = scrub(message, {str(blob): "model.pt2"}, tmp_path)
    assert clean == "cannot read model.pt2: bad entry at <object at 0x…> (see <data dir>/…)"


def test_a_native_crash_is_named_a_crash(
    world: World, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DW_TEST_ENGINE_CRASH", "statistics")
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.startswith("the engine crashed (SIGSEGV) while computing statistics")
    assert "memory" not in job.error and "incident" in job.error
    assert _attempt_folders(world) == [] and not world.blobs.job_dir(job.id).exists()


def test_an_inspection_has_a_time_limit_of_its_own(world: World, model_file: Path) -> None:
    # One second is less than the engine needs to import torch: the limit strikes.
    world.settings = Settings(data_dir=world.root, inspection_time_limit=1, device="cpu")
    model_id = world.model(model_file)
    started = time.monotonic()
    execute_inspection(model_id, world.store, world.blobs, world.settings)
    assert time.monotonic() - started < 30
    record = world.store.get_model(TENANT, model_id)
    assert record is not None and record.status is ModelStatus.INVALID
    assert record.error == (
        "the model took longer than 1 s to inspect (DEADWEIGHT_INSPECTION_TIME_LIMIT); "
        "a model this costly to read is refused"
    )
    assert list(world.blobs.tmp_dir.glob(".inspect-*")) == []


def test_a_job_may_not_publish_more_than_its_output_cap(world: World, model_file: Path) -> None:
    world.settings = Settings(
        data_dir=world.root, batch_size=32, device="cpu", job_output_bytes=20_000
    )
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert "DEADWEIGHT_JOB_OUTPUT_BYTES" in job.error and "20000 bytes" in job.error
    assert _attempt_folders(world) == [] and not world.blobs.job_dir(job.id).exists()


def test_a_job_may_not_publish_past_its_tenants_storage_quota(
    world: World, model_file: Path
) -> None:
    model, data = world.model(model_file), world.npz()
    stored = model_file.stat().st_size + (world.root / "data-200.npz").stat().st_size
    # Room for the uploads and a little more: far less than the job's candidates need.
    world.settings = Settings(
        data_dir=world.root, batch_size=32, device="cpu", tenant_storage_bytes=stored + 5_000
    )
    job = world.run(world.job(model, data).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert "DEADWEIGHT_TENANT_STORAGE_BYTES" in job.error and "5000 bytes" in job.error
    assert _attempt_folders(world) == [] and not world.blobs.job_dir(job.id).exists()


def test_a_job_does_not_start_without_free_disk(world: World, model_file: Path) -> None:
    free = shutil.disk_usage(world.root).free
    world.settings = Settings(
        data_dir=world.root, batch_size=32, device="cpu", min_free_disk_bytes=free + 2**40
    )
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.startswith("the data directory is full")
    assert "DEADWEIGHT_MIN_FREE_DISK_BYTES" in job.error
    assert _attempt_folders(world) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs the right to mount: root, as in CI's container)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clear_job_error_and_the_service_recovers(
    small_disk: Path, tmp_path: Path, model_file: Path
) -> None:
    world = World(small_disk / "data")
    # The store lives elsewhere: this is about the job's files, not the database's.
    world.store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    world.store.migrate()
    world.settings = Settings(
        data_dir=world.root, batch_size=32, device="cpu", min_free_disk_bytes=0
    )
    model_id, dataset_id = world.model(model_file), world.npz()
    filler = small_disk / "filler"
    with filler.open("wb") as handle:  # leave 64 KiB: the plots and programs do not fit
        handle.write(b"\0" * (shutil.disk_usage(small_disk).free - 64 * 1024))
    job = world.run(world.job(model_id, dataset_id).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.startswith("the data directory is full"), job.error
    assert _attempt_folders(world) == [] and not world.blobs.job_dir(job.id).exists()

    filler.unlink()  # space is freed: the next job runs
    again = world.run(world.job(model_id, dataset_id).id)
    assert again.status is JobStatus.SUCCEEDED, again.error
