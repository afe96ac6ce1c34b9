"""The SQL job store: models, datasets and jobs, one row each, every row owned by a tenant.

All lookups take the tenant: a row of another tenant is invisible (returns None / False),
exactly like a row that does not exist. Methods named `*_any_tenant`, and the job
transitions that take only an ID, are for the worker, which acts on IDs from the queue.

Every state change is one conditional `UPDATE ... WHERE status = ...` checked by its row
count: a duplicate Celery delivery, a late worker or a cancel racing a finish can then
never overwrite a state another process already wrote.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.orm import Session

from jobs.blob_refs import BlobReferences, HoldLost
from jobs.deletion import Deletion
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.scheduling import Scheduling
from jobs.states import JobStatus, ModelStatus, Stage
from jobs.tables import DatasetRow, JobRow, ModelRow, UploadHoldRow, utcnow
from jobs.usage import TenantUsage


class JobStore(Scheduling, BlobReferences, TenantUsage, Deletion):
    """Uploads and jobs of every tenant. Job transitions come from `JobLifecycle` (through
    `Scheduling`, which picks the fairest waiting work), blob references from
    `BlobReferences`, per-tenant figures from `TenantUsage`, deleting uploads safely and
    what the reaper expires from `Deletion`."""

    # -- models ---------------------------------------------------------------
    def add_model(
        self, tenant: str, sha256: str, size: int, filename: str, hold_id: str | None = None
    ) -> ModelRecord:
        """Insert a model record; `hold_id` (the upload's hold) is dropped in the same step."""
        row = ModelRow(
            tenant=tenant,
            sha256=sha256,
            size=size,
            filename=filename,
            status=ModelStatus.PENDING.value,
        )
        with self._session() as session:
            session.add(row)
            _drop_hold(session, hold_id)
        return row.to_record()

    def get_model(self, tenant: str, model_id: str) -> ModelRecord | None:
        query = select(ModelRow).where(ModelRow.id == model_id, ModelRow.tenant == tenant)
        with self._session() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else row.to_record()

    def get_model_any_tenant(self, model_id: str) -> ModelRecord | None:
        """For the worker only: it acts on IDs taken from the queue."""
        with self._session() as session:
            row = session.get(ModelRow, model_id)
            return None if row is None else row.to_record()

    def set_model_inspected(
        self, model_id: str, status: ModelStatus, info: dict[str, Any] | None, error: str | None
    ) -> None:
        """Record the worker's inspection; a second delivery rewrites the same result."""
        statement = (
            update(ModelRow)
            .where(ModelRow.id == model_id)
            .values(status=ModelStatus(status).value, info=info, error=error)
        )
        with self._session() as session:
            self._change(session, statement)

    def delete_model(self, tenant: str, model_id: str) -> bool:
        statement = delete(ModelRow).where(ModelRow.id == model_id, ModelRow.tenant == tenant)
        return self._delete(statement)

    def withdraw_model(self, tenant: str, model_id: str) -> bool:
        """Delete a model no worker has taken for inspection (its message could not be
        sent); False when an inspection already claimed it."""
        statement = delete(ModelRow).where(
            ModelRow.id == model_id,
            ModelRow.tenant == tenant,
            ModelRow.status == ModelStatus.PENDING.value,
            ModelRow.inspection_started_at.is_(None),
        )
        return self._delete(statement)

    # -- datasets -------------------------------------------------------------
    def add_dataset(
        self,
        tenant: str,
        sha256: str,
        size: int,
        filename: str,
        format: str,
        samples: int,
        x_shape: list[int],
        has_labels: bool,
        label_column: str | None,
        hold_id: str | None = None,
    ) -> DatasetRecord:
        """Insert a dataset record; `hold_id` (the upload's hold) is dropped in the same step."""
        row = DatasetRow(
            tenant=tenant,
            sha256=sha256,
            size=size,
            filename=filename,
            format=format,
            samples=samples,
            x_shape=list(x_shape),
            has_labels=has_labels,
            label_column=label_column,
        )
        with self._session() as session:
            session.add(row)
            _drop_hold(session, hold_id)
        return row.to_record()

    def get_dataset(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        query = select(DatasetRow).where(DatasetRow.id == dataset_id, DatasetRow.tenant == tenant)
        with self._session() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else row.to_record()

    def get_dataset_any_tenant(self, dataset_id: str) -> DatasetRecord | None:
        with self._session() as session:
            row = session.get(DatasetRow, dataset_id)
            return None if row is None else row.to_record()

    def delete_dataset(self, tenant: str, dataset_id: str) -> bool:
        statement = delete(DatasetRow).where(
            DatasetRow.id == dataset_id, DatasetRow.tenant == tenant
        )
        return self._delete(statement)

    # -- jobs -----------------------------------------------------------------
    def add_job(
        self,
        tenant: str,
        model_id: str,
        dataset_id: str,
        eval_dataset_id: str | None,
        config: dict[str, Any],
        verify_uploads: bool = False,
    ) -> JobRecord:
        """Insert a queued job. With `verify_uploads` the model and datasets must still
        exist once the job is written (see `delete_upload_unless_used`).

        Raises:
            UploadGone: (with `verify_uploads`) one of them was deleted meanwhile.
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
        with self._session() as session:
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
                        raise UploadGone(upload_id)
        return row.to_record()

    def get_job(self, tenant: str, job_id: str) -> JobRecord | None:
        query = select(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant)
        with self._session() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else row.to_record()

    def get_job_any_tenant(self, job_id: str) -> JobRecord | None:
        with self._session() as session:
            row = session.get(JobRow, job_id)
            return None if row is None else row.to_record()

    def list_jobs(self, tenant: str, limit: int, offset: int) -> tuple[list[JobRecord], int]:
        """Newest first; returns (page, total count)."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        page = (
            select(JobRow)
            .where(JobRow.tenant == tenant)
            # The ID breaks ties between jobs created in the same microsecond, so pages
            # never overlap or skip a job.
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(JobRow).where(JobRow.tenant == tenant)
        with self._session() as session:
            rows = session.scalars(page).all()
            total = session.scalar(count) or 0
            return [row.to_record() for row in rows], total

    def delete_job(self, tenant: str, job_id: str) -> bool:
        statement = delete(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant)
        return self._delete(statement)

    def withdraw_job(self, tenant: str, job_id: str) -> bool:
        """Delete a job no worker has started (its message could not be sent); False when
        a worker already started it (on another message: `jobs.scheduling`)."""
        statement = delete(JobRow).where(
            JobRow.id == job_id, JobRow.tenant == tenant, JobRow.status == JobStatus.QUEUED.value
        )
        return self._delete(statement)

    def stale_pending_models(
        self, older_than_seconds: float, claim_seconds: float = 0.0
    ) -> list[str]:
        """Models uploaded longer ago than that and still waiting for their inspection,
        except those an inspection claimed less than `claim_seconds` ago (still running)."""
        now = utcnow()
        cutoff = now - timedelta(seconds=older_than_seconds)
        query = select(ModelRow.id).where(
            ModelRow.status == ModelStatus.PENDING.value,
            ModelRow.created_at < cutoff,
            or_(
                ModelRow.inspection_started_at.is_(None),
                ModelRow.inspection_started_at < now - timedelta(seconds=claim_seconds),
            ),
        )
        with self._session() as session:
            return list(session.scalars(query).all())


def _drop_hold(session: Session, hold_id: str | None) -> None:
    """The record now refers to the blob: the hold that kept it during validation goes.

    Raises:
        HoldLost: the hold was released meanwhile (the reaper took it for a dead upload's),
            so the blob may be gone: the record is not written.
    """
    if hold_id is None:
        return
    result = session.execute(delete(UploadHoldRow).where(UploadHoldRow.id == hold_id))
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise HoldLost(hold_id)


class UploadGone(LookupError):
    """A job's model or dataset was deleted while the job was being submitted."""
