"""Deleting uploads and jobs: at a user's request (an upload no active job uses) and after
`RETENTION_DAYS` (finished jobs, and uploads no job uses), by the reaper."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, delete, exists, or_, select

from jobs.database import Database
from jobs.states import ACTIVE_STATUSES, TERMINAL_STATUSES
from jobs.tables import DatasetRow, JobRow, ModelRow, utcnow


class Deletion:
    """Deletions that must check what still uses a row, and what retention expires."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def expired_jobs(self, retention_days: int) -> list[str]:
        """Finished (succeeded, failed, cancelled) jobs that ended longer ago than that."""
        cutoff = utcnow() - timedelta(days=retention_days)
        terminal = [s.value for s in TERMINAL_STATUSES]
        query = select(JobRow.id).where(JobRow.status.in_(terminal), JobRow.finished_at < cutoff)
        with self._db.session() as session:
            return list(session.scalars(query).all())

    def delete_job_any_tenant(self, job_id: str) -> bool:
        """Delete a finished job (never an active one)."""
        terminal = [s.value for s in TERMINAL_STATUSES]
        statement = delete(JobRow).where(JobRow.id == job_id, JobRow.status.in_(terminal))
        return self._db.delete(statement)

    def expire_unused_uploads(self, retention_days: int) -> list[str]:
        """Delete models and datasets older than that which no job refers to any more;
        returns their blobs' hashes (the caller releases each: `BlobReferences.release_blob`)."""
        cutoff = utcnow() - timedelta(days=retention_days)
        gone: list[str] = []
        for row_type in (ModelRow, DatasetRow):
            used = or_(
                JobRow.model_id == row_type.id,
                JobRow.dataset_id == row_type.id,
                JobRow.eval_dataset_id == row_type.id,
            )
            query = select(row_type.tenant, row_type.id, row_type.sha256).where(
                row_type.created_at < cutoff, ~exists().where(used)
            )
            with self._db.session() as session:
                candidates = session.execute(query).all()
            for tenant, upload_id, sha256 in candidates:
                # Deleted first and checked after, as any deletion of an upload: a job
                # submitted for it meanwhile keeps it.
                if self.delete_upload_unless_used(tenant, upload_id):
                    gone.append(sha256)
        return gone

    def delete_upload_unless_used(self, tenant: str, upload_id: str) -> bool | None:
        """Delete a model or dataset unless a queued or running job uses it: True when
        deleted, False when in use (nothing changes), None when there is no such record.

        The row goes first and the jobs are checked after, in one transaction, so a job
        submitted at the same moment (`JobTable.add(verify_uploads=True)`) either sees the row
        gone or makes this deletion see it in use: never a job on a deleted upload.
        """
        try:
            with self._db.session() as session:
                deleted = False
                for row_type in (ModelRow, DatasetRow):
                    statement = delete(row_type).where(
                        row_type.id == upload_id, row_type.tenant == tenant
                    )
                    deleted = self._db.change(session, statement) or deleted
                if not deleted:
                    return None
                if session.scalar(select(_used_by_active_job(tenant, upload_id))):
                    raise _InUse
                return True
        except _InUse:
            return False  # rolled back

    def uploads_in_use_by_jobs(self, tenant: str, upload_id: str) -> bool:
        """True while a queued or running job refers to this model or dataset."""
        with self._db.session() as session:
            return bool(session.scalar(select(_used_by_active_job(tenant, upload_id))))


class _InUse(Exception):
    """Rolls a deletion back: a queued or running job uses the upload."""


def _used_by_active_job(tenant: str, upload_id: str) -> ColumnElement[bool]:
    return exists().where(
        JobRow.tenant == tenant,
        JobRow.status.in_(sorted(ACTIVE_STATUSES)),
        or_(
            JobRow.model_id == upload_id,
            JobRow.dataset_id == upload_id,
            JobRow.eval_dataset_id == upload_id,
        ),
    )
