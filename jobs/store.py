"""The SQL job store: models, datasets and jobs, one row each, every row owned by a tenant.

All lookups take the tenant: a row of another tenant is invisible (returns None / False),
exactly like a row that does not exist. Methods named `*_any_tenant`, and the job
transitions that take only an ID, are for the worker, which acts on IDs from the queue.

Every state change is one conditional `UPDATE ... WHERE status = ...` checked by its row
count: a duplicate Celery delivery, a late worker or a cancel racing a finish can then
never overwrite a state another process already wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CursorResult, Delete, Update, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from jobs.database import create_store_engine, normalize_url, upgrade_to_head
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.states import TERMINAL_STATUSES, JobStatus, ModelStatus, Stage
from jobs.tables import DatasetRow, JobRow, ModelRow, utcnow

_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class JobStore:
    def __init__(self, database_url: str) -> None:
        """Connect (SQLite file or PostgreSQL URL); does not create tables."""
        self._engine = create_store_engine(normalize_url(database_url))
        # Records are copied out before the session closes, so nothing needs reloading.
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent, safe at every start)."""
        upgrade_to_head(self._engine)

    def ping(self) -> None:
        """Raise if the database cannot be reached (used by /readyz)."""
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close the pooled connections (at shutdown, or in tests between databases)."""
        self._engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One short transaction: committed on success, rolled back on any exception."""
        with self._sessions.begin() as session:
            yield session

    def _change(self, session: Session, statement: Update | Delete) -> bool:
        """Run a conditional UPDATE or DELETE; True when it matched a row."""
        result = session.execute(statement.execution_options(synchronize_session=False))
        # Always a CursorResult for DML; the isinstance narrows the type for rowcount.
        assert isinstance(result, CursorResult)
        return result.rowcount > 0

    def _delete(self, statement: Delete) -> bool:
        with self._session() as session:
            return self._change(session, statement)

    # -- models ---------------------------------------------------------------
    def add_model(self, tenant: str, sha256: str, size: int, filename: str) -> ModelRecord:
        row = ModelRow(
            tenant=tenant,
            sha256=sha256,
            size=size,
            filename=filename,
            status=ModelStatus.PENDING.value,
        )
        with self._session() as session:
            session.add(row)
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
    ) -> DatasetRecord:
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

    def blob_in_use(self, sha256: str) -> bool:
        """True while any model or dataset row still refers to this blob."""
        query = select(
            or_(
                exists().where(ModelRow.sha256 == sha256),
                exists().where(DatasetRow.sha256 == sha256),
            )
        )
        with self._session() as session:
            return bool(session.scalar(query))

    def uploads_in_use_by_jobs(self, tenant: str, upload_id: str) -> bool:
        """True while a queued or running job refers to this model or dataset."""
        query = select(
            exists().where(
                JobRow.tenant == tenant,
                JobRow.status.in_(_ACTIVE),
                or_(
                    JobRow.model_id == upload_id,
                    JobRow.dataset_id == upload_id,
                    JobRow.eval_dataset_id == upload_id,
                ),
            )
        )
        with self._session() as session:
            return bool(session.scalar(query))

    # -- jobs -----------------------------------------------------------------
    def add_job(
        self,
        tenant: str,
        model_id: str,
        dataset_id: str,
        eval_dataset_id: str | None,
        config: dict[str, Any],
    ) -> JobRecord:
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

    def start_job(self, job_id: str) -> JobRecord | None:
        """queued -> running (conditional UPDATE); attempts += 1; started_at set.

        Returns None when the job is not queued any more (cancelled, finished, or already
        taken by another delivery), so a duplicate message cannot run it twice.
        """
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.RUNNING.value,
                stage=Stage.LOADING.value,
                fraction=0.0,
                attempts=JobRow.attempts + 1,
                started_at=utcnow(),
            )
        )
        with self._session() as session:
            if not self._change(session, statement):
                return None
            row = session.get(JobRow, job_id)
            return None if row is None else row.to_record()

    def set_progress(self, job_id: str, stage: str, fraction: float) -> None:
        """Only while running; `fraction` is clamped to [0, 1]."""
        if not math.isfinite(fraction):
            raise ValueError(f"progress fraction must be finite, got {fraction}")
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == JobStatus.RUNNING.value)
            .values(stage=stage, fraction=min(1.0, max(0.0, fraction)))
        )
        with self._session() as session:
            self._change(session, statement)

    def finish_job(self, job_id: str, status: JobStatus, error: str | None = None) -> bool:
        """running -> succeeded|failed|cancelled (conditional); finished_at set.

        False if the job is not running (already finished, cancelled or deleted). A
        succeeded job reports stage `done` and fraction 1; a failed or cancelled one keeps
        the stage it stopped in, which tells the user where it ended.
        """
        status = JobStatus(status)
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"finish_job needs a terminal status, got {status.value!r}")
        values: dict[str, Any] = {
            "status": status.value,
            "error": error,
            "finished_at": utcnow(),
        }
        if status is JobStatus.SUCCEEDED:
            values.update(stage=Stage.DONE.value, fraction=1.0)
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == JobStatus.RUNNING.value)
            .values(**values)
        )
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

    def is_cancel_requested(self, job_id: str) -> bool:
        """True when the worker should stop: cancel asked, job no longer running, or deleted.

        A job deleted or finished by someone else while the worker still runs it must stop
        as well; the worker's finish_job then returns False and changes nothing.
        """
        query = select(JobRow.status, JobRow.cancel_requested).where(JobRow.id == job_id)
        with self._session() as session:
            found = session.execute(query).one_or_none()
        if found is None:
            return True
        status, cancel_requested = found
        return bool(cancel_requested) or status != JobStatus.RUNNING.value

    def delete_job(self, tenant: str, job_id: str) -> bool:
        statement = delete(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant)
        return self._delete(statement)
