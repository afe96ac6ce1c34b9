"""What the reaper (`jobs.reaper`) asks of the job store: expired leases, lost messages,
the attempts behind leftover folders.

The reaper ends expired leases: `succeeded` when the attempt had already published its
complete result set (it died between the rename and the write; `jobs.manifest`), else back
to `queued` while attempts remain, else `failed` with the reason. Each of its steps is a
conditional UPDATE on the lease it read, so several reapers can run at once and only one
acts on a given expiry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from jobs.database import Database
from jobs.lifecycle import held
from jobs.states import JobStatus, Stage
from jobs.tables import JobRow, utcnow
from jobs.webhook_config import event_for
from jobs.webhook_outbox import record_event


@dataclass
class Reaped:
    """What one reaper pass did, by job ID."""

    requeued: list[str] = field(default_factory=list)  # to be sent to the queue again
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    # Their attempt had published a complete result set before it was lost.
    succeeded: list[str] = field(default_factory=list)


class Reaping:
    """The reaper's reads and its conditional writes on jobs whose worker was lost."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def reap_expired(
        self, max_attempts: int, published: Callable[[str], bool] = lambda _job_id: False
    ) -> Reaped:
        """End every expired lease: re-queue while attempts remain, else fail with a reason.

        A job whose attempt had already published its complete result set (`published`,
        asked of the job's folder) ends `succeeded`: the work is done, nothing is re-run.
        Otherwise a job whose cancellation was asked for ends `cancelled`.
        """
        now = utcnow()
        query = select(JobRow.id, JobRow.attempts, JobRow.lease_owner, JobRow.cancel_requested)
        query = query.where(JobRow.status == JobStatus.RUNNING.value, JobRow.lease_expires_at < now)
        out = Reaped()
        with self._db.session() as session:
            expired = session.execute(query).all()
        values: dict[str, Any]
        for job_id, attempts, owner, cancel in expired:
            # The same lease as read: a renewal or another reaper in between wins.
            same = (*held(job_id, attempts), JobRow.lease_expires_at < now)
            if published(job_id):
                values = {
                    "status": JobStatus.SUCCEEDED.value,
                    "stage": Stage.DONE.value,
                    "fraction": 1.0,
                    "error": None,
                    "finished_at": now,
                    "lease_expires_at": None,
                }
                bucket = out.succeeded
            elif cancel:
                values = {
                    "status": JobStatus.CANCELLED.value,
                    "error": "cancelled by the client (its worker was lost meanwhile)",
                    "finished_at": now,
                    "lease_expires_at": None,
                }
                bucket = out.cancelled
            elif attempts < max_attempts:
                values = {
                    "status": JobStatus.QUEUED.value,
                    "stage": Stage.QUEUED.value,
                    "fraction": 0.0,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "enqueued_at": now,
                }
                bucket = out.requeued
            else:
                values = {
                    "status": JobStatus.FAILED.value,
                    "error": (
                        f"the worker running this job was lost {attempts} times (last: "
                        f"{owner}); giving up after DEADWEIGHT_MAX_ATTEMPTS={max_attempts}"
                    ),
                    "finished_at": now,
                    "lease_expires_at": None,
                }
                bucket = out.failed
            with self._db.session() as session:
                if self._db.change(session, update(JobRow).where(*same).values(**values)):
                    # A job back in the queue emits nothing; an ended one, its webhook event.
                    if bucket is not out.requeued:
                        record_event(session, job_id, event_for(values["status"]))
                    bucket.append(job_id)
        return out

    def stale_queued(self, older_than_seconds: float) -> list[str]:
        """Queued jobs last sent to the queue longer ago than that; their send time is
        reset, so that concurrent reapers do not both send them again."""
        now = utcnow()
        cutoff = now - timedelta(seconds=older_than_seconds)
        query = select(JobRow.id, JobRow.enqueued_at).where(
            JobRow.status == JobStatus.QUEUED.value, JobRow.enqueued_at < cutoff
        )
        with self._db.session() as session:
            found = session.execute(query).all()
        out = []
        for job_id, sent in found:
            claim = (
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.status == JobStatus.QUEUED.value,
                    JobRow.enqueued_at == sent,
                )
                .values(enqueued_at=now)
            )
            with self._db.session() as session:
                if self._db.change(session, claim):
                    out.append(job_id)
        return out

    def attempts_of(self, job_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """(status, attempts) of each of these jobs that exists (the reaper's folder sweep;
        `attempt_is_live` reads it)."""
        wanted = sorted(set(job_ids))
        found: dict[str, tuple[str, int]] = {}
        # Chunks keep the IN list far below every backend's parameter limit.
        for start in range(0, len(wanted), 500):
            query = select(JobRow.id, JobRow.status, JobRow.attempts).where(
                JobRow.id.in_(wanted[start : start + 500])
            )
            with self._db.session() as session:
                for job_id, status, attempts in session.execute(query).all():
                    found[job_id] = (status, attempts)
        return found


def attempt_is_live(found: tuple[str, int] | None, attempt: int) -> bool:
    """Whether attempt `attempt` of a job whose `attempts_of` entry is `found` (None: the job
    is gone) may still be writing its files: only while the job runs that attempt, or is
    queued after the one before it (that attempt then creates them; its files cannot be
    stale). Anything else an attempt left is garbage."""
    status, attempts = found or ("", 0)
    return (status == JobStatus.RUNNING.value and attempt == attempts) or (
        status == JobStatus.QUEUED.value and attempt > attempts
    )
