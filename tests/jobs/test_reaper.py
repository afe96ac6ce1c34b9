"""One reaper pass against real stores and the filesystem queue."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from jobs.blobs import BlobStore
from jobs.queue import Queue, make_celery
from jobs.reaper import reap_once
from jobs.settings import Settings
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.tables import JobRow, ModelRow, utcnow


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
    lost = store.add_job("acme", "m" * 32, "d" * 32, None, {}).id
    store.start_job(lost, lease_seconds=-1)

    old_model = store.add_model("acme", "a" * 64, 3, "a.pt2").id
    blobs.path("a" * 64).parent.mkdir(parents=True, exist_ok=True)
    blobs.path("a" * 64).write_bytes(b"old")
    old_job = store.add_job("acme", "x" * 32, "y" * 32, None, {}).id
    store.start_job(old_job)
    store.finish_job(old_job, JobStatus.SUCCEEDED)
    blobs.job_dir(old_job).mkdir(parents=True)
    with store._session() as session:
        past = utcnow() - timedelta(days=settings.retention_days + 1)
        session.execute(update(JobRow).where(JobRow.id == old_job).values(finished_at=past))
        session.execute(update(ModelRow).where(ModelRow.id == old_model).values(created_at=past))

    done = reap_once(store, queue, blobs, settings)
    assert (done.requeued, done.expired_jobs, done.expired_uploads) == (1, 1, 1)
    job = store.get_job_any_tenant(lost)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 1
    assert lost in _messages(tmp_path)  # sent again
    assert store.get_job_any_tenant(old_job) is None and not blobs.job_dir(old_job).exists()
    assert store.get_model("acme", old_model) is None and not blobs.exists("a" * 64)
    # The queue holds the requeued job's message: nothing is "lost", nothing resent.
    assert reap_once(store, queue, blobs, settings).resent == 0
    store.dispose()


def test_a_lost_message_is_sent_again(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    job_id = store.add_job("acme", "m" * 32, "d" * 32, None, {}).id  # never sent
    with store._session() as session:
        past = utcnow() - timedelta(seconds=3 * settings.lease_seconds)
        session.execute(update(JobRow).where(JobRow.id == job_id).values(enqueued_at=past))
    assert reap_once(store, queue, blobs, settings).resent == 1
    assert job_id in _messages(tmp_path)
    store.dispose()


def test_a_lost_inspection_is_sent_again(tmp_path: Path) -> None:
    store, queue, blobs, settings = _world(tmp_path)
    pending = store.add_model("acme", "a" * 64, 3, "a.pt2").id
    fresh = store.add_model("acme", "b" * 64, 3, "b.pt2").id
    with store._session() as session:
        past = utcnow() - timedelta(seconds=3 * settings.lease_seconds)
        session.execute(update(ModelRow).where(ModelRow.id == pending).values(created_at=past))
    assert reap_once(store, queue, blobs, settings).resent == 1
    assert pending in _messages(tmp_path) and fresh not in _messages(tmp_path)
    store.dispose()
