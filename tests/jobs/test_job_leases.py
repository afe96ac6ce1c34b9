"""Leases, fencing, the reaper's queries and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from sqlalchemy import update

from jobs.database import STORE_OUTAGE
from jobs.states import JobStatus, Stage
from jobs.store import JobStore
from jobs.tables import DatasetRow, JobRow, ModelRow, utcnow

EXPIRED = -1  # lease_seconds that make a lease already expired


def _job(store: JobStore) -> str:
    return store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id


def _age(store: JobStore, table: type, row_id: str, **columns_days_ago: int) -> None:
    values = {k: utcnow() - timedelta(days=d) for k, d in columns_days_ago.items()}
    with store.database.session() as session:
        session.execute(update(table).where(table.id == row_id).values(**values))


def test_start_takes_a_lease_for_a_new_attempt(store: JobStore) -> None:
    job_id = _job(store)
    started = store.lifecycle.start(job_id, owner="host:1", lease_seconds=60)
    assert started is not None and started.attempts == 1
    assert store.lifecycle.renew_lease(job_id, 1, 60)
    assert not store.lifecycle.renew_lease(job_id, 2, 60)  # not this attempt's lease


def test_a_late_attempt_changes_nothing(store: JobStore) -> None:
    job_id = _job(store)
    store.lifecycle.start(job_id, lease_seconds=EXPIRED)
    assert store.reaping.reap_expired(max_attempts=3).requeued == [job_id]
    assert store.lifecycle.start(job_id, lease_seconds=60) is not None  # attempt 2 runs now
    # Attempt 1 comes back: progress, renewal and its verdict are all refused.
    store.lifecycle.set_progress(job_id, Stage.CANDIDATES.value, 0.9, attempt=1)
    assert not store.lifecycle.renew_lease(job_id, 1, 60)
    assert not store.lifecycle.finish(job_id, JobStatus.FAILED, "late", attempt=1)
    assert store.lifecycle.is_cancel_requested(job_id, attempt=1)
    job = store.jobs.get_any_tenant(job_id)
    assert job is not None and job.status is JobStatus.RUNNING and job.attempts == 2
    assert job.stage == Stage.LOADING.value
    assert store.lifecycle.finish(job_id, JobStatus.SUCCEEDED, attempt=2)


def test_expired_leases_are_requeued_then_failed_with_the_count(store: JobStore) -> None:
    job_id = _job(store)
    for attempt in (1, 2):
        store.lifecycle.start(job_id, owner=f"host:{attempt}", lease_seconds=EXPIRED)
        assert store.reaping.reap_expired(max_attempts=3).requeued == [job_id]
        job = store.jobs.get_any_tenant(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.stage == "queued"
    store.lifecycle.start(job_id, owner="host:3", lease_seconds=EXPIRED)
    reaped = store.reaping.reap_expired(max_attempts=3)
    assert reaped.failed == [job_id] and reaped.requeued == []
    job = store.jobs.get_any_tenant(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None
    assert "lost 3 times" in job.error and "host:3" in job.error
    assert "DEADWEIGHT_MAX_ATTEMPTS=3" in job.error


def test_live_leases_and_cancelled_jobs(store: JobStore) -> None:
    live, cancelled = _job(store), _job(store)
    store.lifecycle.start(live, lease_seconds=60)
    store.lifecycle.start(cancelled, lease_seconds=EXPIRED)
    store.lifecycle.request_cancel("acme", cancelled)
    reaped = store.reaping.reap_expired(max_attempts=3)
    assert reaped.cancelled == [cancelled] and reaped.requeued == [] and reaped.failed == []
    job = store.jobs.get_any_tenant(cancelled)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert store.jobs.get_any_tenant(live).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_two_reapers_act_once(store: JobStore, database_url: str) -> None:
    other = JobStore(database_url)
    try:
        job_id = _job(store)
        store.lifecycle.start(job_id, lease_seconds=EXPIRED)
        first, second = store.reaping.reap_expired(3), other.reaping.reap_expired(3)
        assert sorted(first.requeued + second.requeued) == [job_id]
    finally:
        other.dispose()


def test_stale_queued_jobs_are_claimed_once(store: JobStore) -> None:
    fresh, stale = _job(store), _job(store)
    _age(store, JobRow, stale, enqueued_at=1)
    assert store.reaping.stale_queued(older_than_seconds=3600) == [stale]
    assert store.reaping.stale_queued(older_than_seconds=3600) == []  # its send time was reset
    assert fresh not in store.reaping.stale_queued(older_than_seconds=3600)


def test_retention_removes_old_finished_jobs_and_unused_uploads(store: JobStore) -> None:
    old_model = store.models.add("acme", "a" * 64, 1, "a.pt2").id
    used_model = store.models.add("acme", "b" * 64, 1, "b.pt2").id
    new_model = store.models.add("acme", "c" * 64, 1, "c.pt2").id
    dataset = store.datasets.add("acme", "d" * 64, 1, "d.npz", "npz", 1, [1], False, None).id
    old_job = store.jobs.add("acme", used_model, dataset, None, {}).id
    active = store.jobs.add("acme", used_model, dataset, None, {}).id
    store.lifecycle.start(old_job)
    store.lifecycle.finish(old_job, JobStatus.SUCCEEDED)
    for model in (old_model, used_model):
        _age(store, ModelRow, model, created_at=40)
    _age(store, DatasetRow, dataset, created_at=40)
    _age(store, JobRow, old_job, finished_at=31)
    _age(store, JobRow, active, created_at=40)

    assert store.deletion.expired_jobs(30) == [old_job]
    assert store.deletion.delete_job_any_tenant(old_job)
    assert not store.deletion.delete_job_any_tenant(active)  # never an active job
    # The active job still uses used_model and dataset; old_model is free, new_model young.
    assert store.deletion.expire_unused_uploads(30) == ["a" * 64]
    assert store.models.get("acme", old_model) is None
    assert store.models.get("acme", new_model) is not None
    assert store.models.get("acme", used_model) is not None


def test_a_published_job_is_reaped_as_succeeded(store: JobStore) -> None:
    done, lost = _job(store), _job(store)
    for job_id in (done, lost):
        store.lifecycle.start(job_id, lease_seconds=EXPIRED)
    reaped = store.reaping.reap_expired(max_attempts=1, published=lambda job_id: job_id == done)
    assert reaped.succeeded == [done] and reaped.failed == [lost]
    job = store.jobs.get_any_tenant(done)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.fraction == 1.0
    assert store.reaping.attempts_of([done, lost, "f" * 32]) == {
        done: ("succeeded", 1),
        lost: ("failed", 1),
    }


def test_an_unreachable_database_is_a_store_outage() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = JobStore(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    try:
        with pytest.raises(STORE_OUTAGE):
            gone.lifecycle.is_cancel_requested("a" * 32, 1)
        with pytest.raises(STORE_OUTAGE):
            gone.lifecycle.renew_lease("a" * 32, 1, 60)
    finally:
        gone.dispose()
