"""A job's lease and its fencing (jobs/lifecycle.py), on SQLite and PostgreSQL: a worker
whose attempt was taken over changes nothing."""

from __future__ import annotations

from jobs.states import JobStatus, Stage
from jobs.store import JobStore

EXPIRED = -1  # lease_seconds that make a lease already expired


def _job(store: JobStore) -> str:
    return store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id


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
