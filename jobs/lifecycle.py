"""A job's transitions, fenced by its attempt and its lease.

A running job holds a lease: the attempt number, the worker that runs it and an expiry the
worker pushes forward while it works (`renew_lease`, a heartbeat). Every change a worker
makes names its attempt, so a worker that comes back after its lease was taken over (the
reaper re-enqueued the job, another worker started attempt n + 1) changes nothing.

Expired leases are ended by the reaper, through `jobs.reaping`. Every transition a job's
webhook asks to hear of writes its event into the outbox in its own transaction
(`jobs.webhook_outbox.record_event`).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from jobs.database import Database
from jobs.records import JobRecord
from jobs.states import TERMINAL_STATUSES, JobStatus, Stage
from jobs.tables import JobRow, utcnow
from jobs.webhook_config import WebhookEvent, event_for
from jobs.webhook_outbox import record_event


class JobLifecycle:
    """queued -> running -> succeeded | failed | cancelled, each step a conditional UPDATE."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def start(
        self, job_id: str, owner: str = "worker", lease_seconds: int = 60
    ) -> JobRecord | None:
        """queued -> running with a new attempt and a lease held by `owner`.

        Returns None when the job is not queued any more (cancelled, finished, or already
        taken by another delivery), so a duplicate message cannot run it twice.
        """
        now = utcnow()
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.RUNNING.value,
                stage=Stage.LOADING.value,
                fraction=0.0,
                attempts=JobRow.attempts + 1,
                started_at=now,
                lease_owner=owner[:255],
                lease_expires_at=now + timedelta(seconds=lease_seconds),
            )
        )
        with self._db.session() as session:
            if not self._db.change(session, statement):
                return None
            record_event(session, job_id, WebhookEvent.STARTED)
            row = session.get(JobRow, job_id)
            return None if row is None else row.to_record()

    def renew_lease(self, job_id: str, attempt: int, lease_seconds: int) -> bool:
        """Push the lease forward; False when this attempt no longer holds it."""
        statement = (
            update(JobRow)
            .where(*held(job_id, attempt))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        with self._db.session() as session:
            return self._db.change(session, statement)

    def set_progress(
        self, job_id: str, stage: str, fraction: float, attempt: int | None = None
    ) -> None:
        """Only while running (and, given `attempt`, only that attempt); fraction in [0, 1]."""
        if not math.isfinite(fraction):
            raise ValueError(f"progress fraction must be finite, got {fraction}")
        statement = (
            update(JobRow)
            .where(*held(job_id, attempt))
            .values(stage=stage, fraction=min(1.0, max(0.0, fraction)))
        )
        with self._db.session() as session:
            self._db.change(session, statement)

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        error: str | None = None,
        attempt: int | None = None,
    ) -> bool:
        """running -> succeeded|failed|cancelled (conditional); finished_at set.

        False if the job is not running (already finished, cancelled, deleted) or, given
        `attempt`, runs under another attempt now. A succeeded job reports stage `done` and
        fraction 1; a failed or cancelled one keeps the stage it stopped in.
        """
        status = JobStatus(status)
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"finishing a job needs a terminal status, got {status.value!r}")
        values: dict[str, Any] = {
            "status": status.value,
            "error": error,
            "finished_at": utcnow(),
            "lease_expires_at": None,
        }
        if status is JobStatus.SUCCEEDED:
            values.update(stage=Stage.DONE.value, fraction=1.0)
        statement = update(JobRow).where(*held(job_id, attempt)).values(**values)
        with self._db.session() as session:
            if not self._db.change(session, statement):
                return False
            # In the same transaction: the job never ends without its webhook event on record.
            record_event(session, job_id, event_for(status))
            return True

    def request_cancel(self, tenant: str, job_id: str) -> JobRecord | None:
        """queued -> cancelled at once; running -> cancel_requested=True (the worker stops).

        Terminal jobs are returned unchanged. None if the job does not exist for this tenant.
        """
        mine = (JobRow.id == job_id, JobRow.tenant == tenant)
        cancel_queued = (
            update(JobRow)
            .where(*mine, JobRow.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.CANCELLED.value, finished_at=utcnow())
        )
        flag_running = (
            update(JobRow)
            .where(*mine, JobRow.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True)
        )
        with self._db.session() as session:
            # Queued first: if a worker starts the job between the two statements, the
            # second one still catches it as running.
            if self._db.change(session, cancel_queued):
                record_event(session, job_id, WebhookEvent.CANCELLED)
            else:
                self._db.change(session, flag_running)
            row = session.scalars(select(JobRow).where(*mine)).one_or_none()
            return None if row is None else row.to_record()

    def is_cancel_requested(self, job_id: str, attempt: int | None = None) -> bool:
        """True when the worker should stop: cancel asked, job no longer running (or no
        longer this attempt's), or deleted. The worker's `finish` then changes nothing."""
        query = select(JobRow.status, JobRow.cancel_requested, JobRow.attempts).where(
            JobRow.id == job_id
        )
        with self._db.session() as session:
            found = session.execute(query).one_or_none()
        if found is None:
            return True
        status, cancel_requested, attempts = found
        taken_over = attempt is not None and attempts != attempt
        return bool(cancel_requested) or status != JobStatus.RUNNING.value or taken_over


def held(job_id: str, attempt: int | None) -> tuple[Any, ...]:
    """Conditions for 'this attempt still runs this job'."""
    conditions: tuple[Any, ...] = (JobRow.id == job_id, JobRow.status == JobStatus.RUNNING.value)
    if attempt is not None:
        conditions += (JobRow.attempts == attempt,)
    return conditions
