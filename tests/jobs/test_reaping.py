"""What the reaper asks of the store (jobs/reaping.py), on SQLite and PostgreSQL: expired
leases requeued, failed or succeeded, stale queued jobs, attempts behind leftovers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.tables import JobRow, utcnow

EXPIRED = -1  # lease_seconds that make a lease already expired


def _job(store: JobStore) -> str:
    return store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id


def _age(store: JobStore, table: type, row_id: str, **columns_days_ago: int) -> None:
    values = {k: utcnow() - timedelta(days=d) for k, d in columns_days_ago.items()}
    with store.database.session() as session:
        session.execute(update(table).where(table.id == row_id).values(**values))


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
