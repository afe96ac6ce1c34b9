"""The job table's reads (SQLAlchemy Core, no ORM session) hand out exactly the records the
ORM rows would, in every state a job passes through, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select

from jobs.records import JobRecord
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.tables import JobRow

CONFIG = {"criterion": "seed", "thresholds": [{"fraction": 0.5}], "recovery": None}


def _through_the_orm(store: JobStore, job_id: str) -> JobRecord:
    with store.database.session() as session:
        row = session.scalars(select(JobRow).where(JobRow.id == job_id)).one()
        return row.to_record()


def _jobs_in_every_state(store: JobStore) -> list[str]:
    queued = store.jobs.add("acme", "m" * 32, "d" * 32, None, CONFIG)
    running = store.jobs.add("acme", "m" * 32, "d" * 32, "e" * 32, CONFIG)
    assert store.lifecycle.start(running.id) is not None
    store.lifecycle.set_progress(running.id, "statistics", 0.25)
    assert store.lifecycle.request_cancel("acme", running.id) is not None
    failed = store.jobs.add("acme", "m" * 32, "d" * 32, None, CONFIG)
    assert store.lifecycle.start(failed.id) is not None
    assert store.lifecycle.finish(failed.id, JobStatus.FAILED, "the model has no layer")
    return [queued.id, running.id, failed.id]


def test_reads_equal_the_orm_records(store: JobStore) -> None:
    ids = _jobs_in_every_state(store)
    for job_id in ids:
        expected = _through_the_orm(store, job_id)
        assert store.jobs.get("acme", job_id) == expected
        assert store.jobs.get_any_tenant(job_id) == expected
        got = store.jobs.get("acme", job_id)
        assert got is not None
        assert type(got.status) is JobStatus and got.created_at.tzinfo is UTC
        assert type(got.cancel_requested) is bool and type(got.fraction) is float
    page, total = store.jobs.list("acme", 10, 0)
    assert total == 3
    assert page == [_through_the_orm(store, job_id) for job_id in reversed(ids)]


def test_reads_keep_to_their_tenant(store: JobStore) -> None:
    job = store.jobs.add("acme", "m" * 32, "d" * 32, None, CONFIG)
    assert store.jobs.get("other", job.id) is None
    assert store.jobs.get("acme", "no-such-job") is None
    assert store.jobs.get_any_tenant("no-such-job") is None
    assert store.jobs.list("other", 10, 0) == ([], 0)
