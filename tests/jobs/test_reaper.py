"""One reaper pass against real stores and the filesystem queue."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from jobs.blobs import BlobStore
from jobs.manifest import is_complete, write_manifest
from jobs.queue import Queue, make_celery
from jobs.reaper import Reaper, reap_once
from jobs.settings import Settings
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.tables import JobRow, ModelRow, UploadHoldRow, utcnow


def _world(tmp_path: Path) -> tuple[JobStore, Queue, BlobStore, Settings]:
    settings = Settings(data_dir=tmp_path, broker_url=None, database_url=None, lease_seconds=5)
    settings.ensure_dirs()
    store = JobStore(settings.resolved_database_url())
    store.migrate()
    return store, Queue(make_celery(settings)), BlobStore(tmp_path), settings


def _messages(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "broker" / "queue").iterdir())


def test_a_pass_requeues_resends_and_expires(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    lost = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    store.lifecycle.start(lost, lease_seconds=-1)

    old_model = store.models.add("acme", "a" * 64, 3, "a.pt2").id
    blobs.path("a" * 64).parent.mkdir(parents=True, exist_ok=True)
    blobs.path("a" * 64).write_bytes(b"old")
    old_job = store.jobs.add("acme", "x" * 32, "y" * 32, None, {}).id
    store.lifecycle.start(old_job)
    store.lifecycle.finish(old_job, JobStatus.SUCCEEDED)
    blobs.job_dir(old_job).mkdir(parents=True)
    with store.database.session() as session:
        past = utcnow() - timedelta(days=settings.retention_days + 1)
        session.execute(update(JobRow).where(JobRow.id == old_job).values(finished_at=past))
        session.execute(update(ModelRow).where(ModelRow.id == old_model).values(created_at=past))

    done = reap_once(store, queue, blobs, settings)
    assert (done.requeued, done.expired_jobs, done.expired_uploads) == (1, 1, 1)
    job = store.jobs.get_any_tenant(lost)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 1
    assert lost in _messages(tmp_path)  # sent again
    assert store.jobs.get_any_tenant(old_job) is None and not blobs.job_dir(old_job).exists()
    assert store.models.get("acme", old_model) is None and not blobs.exists("a" * 64)
    # The queue holds the requeued job's message: nothing is "lost", nothing resent.
    assert reap_once(store, queue, blobs, settings).resent == 0
    store.dispose()


def test_a_lost_message_is_sent_again(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    job_id = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id  # never sent
    with store.database.session() as session:
        past = utcnow() - timedelta(seconds=3 * settings.lease_seconds)
        session.execute(update(JobRow).where(JobRow.id == job_id).values(enqueued_at=past))
    assert reap_once(store, queue, blobs, settings).resent == 1
    assert job_id in _messages(tmp_path)
    store.dispose()


def test_a_lost_inspection_is_sent_again(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    pending = store.models.add("acme", "a" * 64, 3, "a.pt2").id
    fresh = store.models.add("acme", "b" * 64, 3, "b.pt2").id
    with store.database.session() as session:
        past = utcnow() - timedelta(seconds=3 * settings.lease_seconds)
        session.execute(update(ModelRow).where(ModelRow.id == pending).values(created_at=past))
    assert reap_once(store, queue, blobs, settings).resent == 1
    assert pending in _messages(tmp_path) and fresh not in _messages(tmp_path)
    store.dispose()


# -- published sets, leftovers and outages (issue 10) -------------------------------------------
def _publish(blobs: BlobStore, job_id: str) -> Path:
    final = blobs.job_dir(job_id)
    final.mkdir(parents=True)
    (final / "results.json").write_text('{"candidates": []}')
    write_manifest(final)
    return final


def _attempt_dirs(blobs: BlobStore, job_id: str, *names: str) -> list[Path]:
    made = []
    for name in names:
        folder = blobs.jobs_dir / f".{job_id}.{name}"
        folder.mkdir(parents=True)
        (folder / "partial.pt2").write_bytes(b"x" * 10)
        made.append(folder)
    return made


def test_a_worker_lost_after_publishing_leaves_a_succeeded_job(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    published = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    half = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    for job_id in (published, half):
        store.lifecycle.start(job_id, lease_seconds=-1)
    final = _publish(blobs, published)
    (_publish(blobs, half) / "extra.png").write_bytes(b"not in the manifest")

    done = reap_once(store, queue, blobs, settings)
    assert (done.recovered, done.requeued) == (1, 1)
    job = store.jobs.get_any_tenant(published)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.attempts == 1
    assert job.error is None and job.stage == "done" and is_complete(final)
    again = store.jobs.get_any_tenant(half)
    assert again is not None and again.status is JobStatus.QUEUED  # not an outcome: re-run
    store.dispose()


def test_a_job_failed_for_good_leaves_no_folders(tmp_path: Path) -> None:
    store, queue, blobs, _ = _world(tmp_path)
    settings = Settings(data_dir=tmp_path, lease_seconds=5, max_attempts=1)
    job_id = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    store.lifecycle.start(job_id, lease_seconds=-1)
    folders = _attempt_dirs(blobs, job_id, "attempt-1", "attempt-1.work")
    assert reap_once(store, queue, blobs, settings).failed == 1
    assert [f for f in folders if f.exists()] == []
    store.dispose()


def test_remove_job_dir_removes_the_attempt_folders_too(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    job_id, other = "a" * 32, "b" * 32
    _publish(blobs, job_id)
    mine = _attempt_dirs(blobs, job_id, "attempt-1", "attempt-2.work")
    theirs = _attempt_dirs(blobs, other, "attempt-1")
    blobs.remove_job_dir(job_id)
    assert not blobs.job_dir(job_id).exists() and [f for f in mine if f.exists()] == []
    assert all(f.exists() for f in theirs)


def test_the_sweep_removes_attempt_folders_nobody_owns(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    finished = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    running = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    requeued = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    for job_id in (finished, running, requeued):
        store.lifecycle.start(job_id, lease_seconds=60)
    store.lifecycle.finish(finished, JobStatus.FAILED, "x")
    with (
        store.database.session() as session
    ):  # attempt 1 of `requeued` was lost; 2 is about to start
        session.execute(update(JobRow).where(JobRow.id == requeued).values(status="queued"))
    stale = [
        *_attempt_dirs(blobs, finished, "attempt-1", "attempt-1.work"),
        *_attempt_dirs(blobs, requeued, "attempt-1"),
        *_attempt_dirs(blobs, "e" * 32, "attempt-3"),  # a job deleted meanwhile
    ]
    live = [
        *_attempt_dirs(blobs, running, "attempt-1", "attempt-1.work"),
        *_attempt_dirs(blobs, requeued, "attempt-2"),
    ]
    assert reap_once(store, queue, blobs, settings).swept == len(stale)
    assert [f for f in stale if f.exists()] == [] and all(f.exists() for f in live)
    store.dispose()


def test_leases_are_left_alone_until_the_database_was_reachable_for_a_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    job_id = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    store.lifecycle.start(job_id, lease_seconds=-1)  # ran out while nobody could renew it
    clock = [1000.0]
    reaper = Reaper(store, queue, blobs, settings, clock=lambda: clock[0])

    first = reaper.run_pass()  # just started: the database may have been down till now
    assert first is not None and first.requeued == 0
    clock[0] += settings.lease_seconds / 2
    assert reaper.run_pass().requeued == 0  # type: ignore[union-attr]

    real_ping = store.ping

    def unreachable() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "ping", unreachable)  # an outage restarts the grace
    clock[0] += settings.lease_seconds
    assert reaper.run_pass() is None
    monkeypatch.setattr(store, "ping", real_ping)
    clock[0] += 1
    assert reaper.run_pass().requeued == 0  # type: ignore[union-attr]
    clock[0] += settings.lease_seconds
    assert reaper.run_pass().requeued == 1  # type: ignore[union-attr]
    store.dispose()


def test_a_files_pass_removes_leftovers_of_dead_processes_only(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    an_hour_ago = time.time() - 3600

    def blob(sha: str, old: bool) -> Path:
        path = blobs.path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sha.encode())
        if old:
            os.utime(path, (an_hour_ago, an_hour_ago))
        return path

    kept = [blob("a" * 64, old=True), blob("b" * 64, old=True), blob("c" * 64, old=False)]
    store.models.add("acme", "a" * 64, 1, "m.pt2")  # in use
    store.blob_refs.hold_upload("acme", "b" * 64, 1)  # being validated right now
    orphan = blob("d" * 64, old=True)  # its record was deleted by a process that died
    abandoned = blob("e" * 64, old=True)
    dead_hold = store.blob_refs.hold_upload("acme", "e" * 64, 1)  # its API died mid-validation
    with store.database.session() as session:
        past = utcnow() - timedelta(hours=1)
        session.execute(
            update(UploadHoldRow).where(UploadHoldRow.id == dead_hold).values(created_at=past)
        )
    inspection = blobs.tmp_dir / ".inspect-x-1"
    inspection.mkdir(parents=True)
    os.utime(inspection, (an_hour_ago, an_hour_ago))
    dead_upload = blobs.tmp_dir / "upload-of-a-killed-api"
    dead_upload.write_bytes(b"x")
    live = blobs.begin_upload()  # a slow client's: old, but its writer holds the lock
    live.write(b"y")
    (live_upload,) = [p for p in blobs.tmp_dir.iterdir() if p.name.startswith("upload-")
                      and p != dead_upload]  # fmt: skip
    os.utime(live_upload, (an_hour_ago, an_hour_ago))

    assert reap_once(store, queue, blobs, settings, sweep_files=False).leftovers == 0
    assert orphan.exists()
    done = reap_once(store, queue, blobs, settings)
    assert done.leftovers == 2  # the dead hold and the orphan
    assert not orphan.exists() and not abandoned.exists() and not inspection.exists()
    assert all(path.exists() for path in kept) and live_upload.exists()
    assert not dead_upload.exists()
    live.abort()
    assert store.blob_refs.stale_holds(
        -3600
    ) != [] and dead_hold not in store.blob_refs.stale_holds(-3600)
    store.dispose()
