"""Jobs, one row each: submitted, read, listed and deleted by their tenant.

Lookups take the tenant (see `jobs.store`); `get_any_tenant` is for the worker, which acts
on IDs taken from the queue. A job's transitions are in `jobs.lifecycle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, delete, func, or_, select

from jobs.database import Database
from jobs.idempotency import Claim, complete_claim
from jobs.records import JOB_RECORD_FIELDS, JobRecord
from jobs.states import JobStatus, Stage
from jobs.tables import DatasetRow, JobRow, ModelRow


class UploadGone(LookupError):
    """A job's model or dataset was deleted: while the job was being submitted (`JobTable.add`
    names the upload in `upload_id`), or before a worker ran it (`worker.execute`)."""

    def __init__(self, message: str, upload_id: str | None = None) -> None:
        super().__init__(message)
        self.upload_id = upload_id


def _record_columns() -> Select[Any]:
    table = JobRow.__table__
    return select(*(table.c[name] for name in JOB_RECORD_FIELDS))


# Built once: a statement built per call costs more than SQLite's read of the row (the
# comparisons, then the cache key), and these serve every poll of a job's status.
_BY_ID = _record_columns().where(JobRow.id == bindparam("job_id"))
_BY_ID_AND_TENANT = _BY_ID.where(JobRow.tenant == bindparam("tenant"))


@dataclass(frozen=True)
class JobFilters:
    """Which of a tenant's jobs a listing shows: any of `statuses` (all when empty), on
    `model_id`, using `dataset_id` for calibration or evaluation."""

    statuses: frozenset[JobStatus] = frozenset()
    model_id: str | None = None
    dataset_id: str | None = None

    def conditions(self, tenant: str) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [JobRow.tenant == tenant]
        if self.statuses:
            conditions.append(JobRow.status.in_(sorted(s.value for s in self.statuses)))
        if self.model_id is not None:
            conditions.append(JobRow.model_id == self.model_id)
        if self.dataset_id is not None:
            conditions.append(
                or_(JobRow.dataset_id == self.dataset_id, JobRow.eval_dataset_id == self.dataset_id)
            )
        return conditions


class JobTable:
    """Job records: add, read, list, delete."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(
        self,
        tenant: str,
        model_id: str,
        dataset_id: str,
        eval_dataset_id: str | None,
        config: dict[str, Any],
        verify_uploads: bool = False,
        claim: Claim | None = None,
    ) -> JobRecord:
        """Insert a queued job. With `verify_uploads` the model and datasets must still
        exist once the job is written (see `Deletion.delete_upload_unless_used`); `claim`
        (its idempotency key) is completed in the same step.

        Raises:
            UploadGone: (with `verify_uploads`) one of them was deleted meanwhile.
            ClaimLost: the key was taken over meanwhile; nothing is written.
        """
        row = JobRow(
            tenant=tenant,
            model_id=model_id,
            dataset_id=dataset_id,
            eval_dataset_id=eval_dataset_id,
            config=config,
            status=JobStatus.QUEUED.value,
            stage=Stage.QUEUED.value,
            fraction=0.0,
            attempts=0,
            cancel_requested=False,
        )
        with self._db.session() as session:
            session.add(row)
            session.flush()  # written first: a deletion running now then sees the job
            if verify_uploads:
                uploads: list[tuple[type[ModelRow] | type[DatasetRow], str]] = [
                    (ModelRow, model_id),
                    (DatasetRow, dataset_id),
                ]
                if eval_dataset_id is not None:
                    uploads.append((DatasetRow, eval_dataset_id))
                for row_type, upload_id in uploads:
                    query = select(row_type.id).where(
                        row_type.id == upload_id, row_type.tenant == tenant
                    )
                    # FOR SHARE on PostgreSQL: a deletion of that row waits for this job.
                    if session.scalar(query.with_for_update(read=True)) is None:
                        raise UploadGone(f"upload {upload_id} was deleted", upload_id)
            complete_claim(session, claim, "job", row.id)
        return row.to_record()

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        return self._read_one(_BY_ID_AND_TENANT, {"job_id": job_id, "tenant": tenant})

    def get_any_tenant(self, job_id: str) -> JobRecord | None:
        return self._read_one(_BY_ID, {"job_id": job_id})

    def _read_one(self, query: Select[Any], values: dict[str, str]) -> JobRecord | None:
        with self._db.read() as connection:
            row = connection.execute(query, values).one_or_none()
        return None if row is None else JobRecord.from_columns(row._asdict())

    def list(
        self,
        tenant: str,
        limit: int,
        offset: int,
        filters: JobFilters | None = None,
    ) -> tuple[list[JobRecord], int]:
        """Newest first, those that pass `filters`; returns (page, total count)."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        conditions = (filters or JobFilters()).conditions(tenant)
        page = (
            _record_columns()
            .where(*conditions)
            # The ID breaks ties between jobs created in the same microsecond, so pages
            # never overlap or skip a job.
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(JobRow).where(*conditions)
        with self._db.read() as connection:
            rows = connection.execute(page).all()
            total = connection.scalar(count) or 0
        return [JobRecord.from_columns(row._asdict()) for row in rows], total

    def delete(self, tenant: str, job_id: str) -> bool:
        statement = delete(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant)
        return self._db.delete(statement)

    def withdraw(self, tenant: str, job_id: str) -> bool:
        """Delete a job no worker has started (its message could not be sent); False when
        a worker already started it (on another message: `jobs.scheduling`)."""
        statement = delete(JobRow).where(
            JobRow.id == job_id, JobRow.tenant == tenant, JobRow.status == JobStatus.QUEUED.value
        )
        return self._db.delete(statement)
