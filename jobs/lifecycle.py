"""A job's transitions, fenced by its attempt and its lease.

A running job holds a lease: the attempt number, the worker that runs it and an expiry the
worker pushes forward while it works (`renew_lease`, a heartbeat). Every change a worker
makes names its attempt, so a worker that comes back after its lease was taken over (the
reaper re-enqueued the job, another worker started attempt n + 1) changes nothing.

The reaper (`jobs.reaper`) ends expired leases: `succeeded` when the attempt had already
published its complete result set (it died between the rename and the write), else back to
`queued` while attempts remain, else `failed` with the reason. Each of its steps is a
conditional UPDATE on the lease it read, so several reapers can run at once and only one
acts on a given expiry.

A published result set is complete when its manifest (`MANIFEST`, written last, inside the
hidden folder, before the rename) lists exactly the files the folder holds, at their sizes:
the worker and the reaper both decide from it whether a published folder is the job's
outcome.

`STORE_OUTAGE` names the errors that mean "the database could not be reached or answered
with a transient failure" (a restart, a dropped connection, SQLite busy or full): a worker
retries those, it never abandons its attempt over them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from jobs.blob_writer import fsync_path
from jobs.records import JobRecord
from jobs.states import TERMINAL_STATUSES, JobStatus, Stage
from jobs.store_base import StoreBase
from jobs.tables import JobRow, utcnow

# Transient store failures: the server is restarting or unreachable, a connection dropped,
# SQLite is locked or its disk full. Constraint violations and bugs are not among them.
STORE_OUTAGE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

# Inside a published job folder; a dot-name, so it is never listed as an artifact.
MANIFEST = ".manifest.json"


@dataclass
class Reaped:
    """What one reaper pass did, by job ID."""

    requeued: list[str] = field(default_factory=list)  # to be sent to the queue again
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    # Their attempt had published a complete result set before it was lost.
    succeeded: list[str] = field(default_factory=list)


class JobLifecycle(StoreBase):
    def start_job(
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
        with self._session() as session:
            if not self._change(session, statement):
                return None
            row = session.get(JobRow, job_id)
            return None if row is None else row.to_record()

    def renew_lease(self, job_id: str, attempt: int, lease_seconds: int) -> bool:
        """Push the lease forward; False when this attempt no longer holds it."""
        statement = (
            update(JobRow)
            .where(*_held(job_id, attempt))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        with self._session() as session:
            return self._change(session, statement)

    def set_progress(
        self, job_id: str, stage: str, fraction: float, attempt: int | None = None
    ) -> None:
        """Only while running (and, given `attempt`, only that attempt); fraction in [0, 1]."""
        if not math.isfinite(fraction):
            raise ValueError(f"progress fraction must be finite, got {fraction}")
        statement = (
            update(JobRow)
            .where(*_held(job_id, attempt))
            .values(stage=stage, fraction=min(1.0, max(0.0, fraction)))
        )
        with self._session() as session:
            self._change(session, statement)

    def finish_job(
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
            raise ValueError(f"finish_job needs a terminal status, got {status.value!r}")
        values: dict[str, Any] = {
            "status": status.value,
            "error": error,
            "finished_at": utcnow(),
            "lease_expires_at": None,
        }
        if status is JobStatus.SUCCEEDED:
            values.update(stage=Stage.DONE.value, fraction=1.0)
        statement = update(JobRow).where(*_held(job_id, attempt)).values(**values)
        with self._session() as session:
            return self._change(session, statement)

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
        with self._session() as session:
            # Queued first: if a worker starts the job between the two statements, the
            # second one still catches it as running.
            if not self._change(session, cancel_queued):
                self._change(session, flag_running)
            row = session.scalars(select(JobRow).where(*mine)).one_or_none()
            return None if row is None else row.to_record()

    def is_cancel_requested(self, job_id: str, attempt: int | None = None) -> bool:
        """True when the worker should stop: cancel asked, job no longer running (or no
        longer this attempt's), or deleted. The worker's finish_job then changes nothing."""
        query = select(JobRow.status, JobRow.cancel_requested, JobRow.attempts).where(
            JobRow.id == job_id
        )
        with self._session() as session:
            found = session.execute(query).one_or_none()
        if found is None:
            return True
        status, cancel_requested, attempts = found
        taken_over = attempt is not None and attempts != attempt
        return bool(cancel_requested) or status != JobStatus.RUNNING.value or taken_over

    # -- the reaper's side ---------------------------------------------------------------
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
        with self._session() as session:
            expired = session.execute(query).all()
        values: dict[str, Any]
        for job_id, attempts, owner, cancel in expired:
            # The same lease as read: a renewal or another reaper in between wins.
            same = (*_held(job_id, attempts), JobRow.lease_expires_at < now)
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
            with self._session() as session:
                if self._change(session, update(JobRow).where(*same).values(**values)):
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
        with self._session() as session:
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
            with self._session() as session:
                if self._change(session, claim):
                    out.append(job_id)
        return out

    def attempts_of(self, job_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """(status, attempts) of each of these jobs that exists (the reaper's folder sweep)."""
        wanted = sorted(set(job_ids))
        found: dict[str, tuple[str, int]] = {}
        # Chunks keep the IN list far below every backend's parameter limit.
        for start in range(0, len(wanted), 500):
            query = select(JobRow.id, JobRow.status, JobRow.attempts).where(
                JobRow.id.in_(wanted[start : start + 500])
            )
            with self._session() as session:
                for job_id, status, attempts in session.execute(query).all():
                    found[job_id] = (status, attempts)
        return found


# -- published result sets ---------------------------------------------------------------
def write_manifest(folder: Path) -> int:
    """Make every file in `folder` durable, then write the manifest last; returns the bytes
    the folder publishes. Called on the hidden folder, before it is renamed into place."""
    files: dict[str, int] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name == MANIFEST or not entry.is_file():
            continue
        fsync_path(entry)
        files[entry.name] = entry.stat().st_size
    target = folder / MANIFEST
    with target.open("w", encoding="utf-8") as handle:
        json.dump({"files": files}, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(folder)
    return sum(files.values())


def is_complete(folder: Path) -> bool:
    """True when `folder` holds exactly the files its manifest lists, at their sizes."""
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        present = {
            entry.name: entry.stat().st_size
            for entry in folder.iterdir()
            if entry.name != MANIFEST and entry.is_file()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(listed, dict) and listed == present


def _held(job_id: str, attempt: int | None) -> tuple[Any, ...]:
    """Conditions for 'this attempt still runs this job'."""
    conditions: tuple[Any, ...] = (JobRow.id == job_id, JobRow.status == JobStatus.RUNNING.value)
    if attempt is not None:
        conditions += (JobRow.attempts == attempt,)
    return conditions
