"""A job that fails: what its user reads (incidents, upload names, crashes) and the limits
on what it may write (output cap, storage quota, free disk)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.settings import Settings
from jobs.states import JobStatus
from jobs.store import JobStore
from tests.worker.world import TENANT, World
from worker.user_errors import scrub


def test_an_internal_error_names_an_incident_not_its_text(
    world: World, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A dataset record the engine cannot take: a ValueError deep inside it.
    sha, size = world.blobs.put_file(model_file)
    data = world.store.datasets.add(TENANT, sha, size, "d.npz", "bogus", 8, [5], False, None)
    job = world.run(world.job(world.model(model_file), data.id).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    match = re.fullmatch(
        r"internal error in the engine \(incident ([0-9a-f]{12})\); the operator can find "
        r"the details in the worker log",
        job.error,
    )
    assert match, job.error
    logged = [r.getMessage() for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and "ValueError" in logged[0] and "bogus" in logged[0]  # details, same ID
    assert world.attempt_folders() == []


def test_a_stored_config_this_release_cannot_read_is_an_incident(
    world: World, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A row written by a newer release (or edited by hand): the API checked every value it
    # wrote, so this is the operator's problem, not the user's, and no engine starts.
    job = world.run(world.job(world.model(model_file), world.npz(), criterion="loudest").id)
    assert job.status is JobStatus.FAILED and job.error is not None
    match = re.fullmatch(r"internal error in the worker \(incident ([0-9a-f]{12})\).*", job.error)
    assert match and "loudest" not in job.error, job.error
    logged = [r.getMessage() for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged
    assert world.attempt_folders() == []


def test_a_refusal_names_the_upload_not_its_path(world: World, model_file: Path) -> None:
    dataset_id = world.npz()
    record = world.store.datasets.get(TENANT, dataset_id)
    assert record is not None
    world.blobs.path(record.sha256).unlink()  # the reader meets a FileNotFoundError
    job = world.run(world.job(world.model(model_file), dataset_id).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert str(world.root) not in job.error and record.sha256 not in job.error
    assert "data-200.npz" in job.error
    assert world.attempt_folders() == []


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
    assert world.attempt_folders() == [] and not world.blobs.job_dir(job.id).exists()


def test_a_job_may_not_publish_more_than_its_output_cap(world: World, model_file: Path) -> None:
    world.settings = Settings(
        data_dir=world.root, batch_size=32, device="cpu", job_output_bytes=20_000
    )
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert "DEADWEIGHT_JOB_OUTPUT_BYTES" in job.error and "20000 bytes" in job.error
    assert world.attempt_folders() == [] and not world.blobs.job_dir(job.id).exists()


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
    assert world.attempt_folders() == [] and not world.blobs.job_dir(job.id).exists()


def test_a_job_does_not_start_without_free_disk(world: World, model_file: Path) -> None:
    free = shutil.disk_usage(world.root).free
    world.settings = Settings(
        data_dir=world.root, batch_size=32, device="cpu", min_free_disk_bytes=free + 2**40
    )
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.startswith("the data directory is full")
    assert "DEADWEIGHT_MIN_FREE_DISK_BYTES" in job.error
    assert world.attempt_folders() == []


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
    assert world.attempt_folders() == [] and not world.blobs.job_dir(job.id).exists()

    filler.unlink()  # space is freed: the next job runs
    again = world.run(world.job(model_id, dataset_id).id)
    assert again.status is JobStatus.SUCCEEDED, again.error
