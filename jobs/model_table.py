"""Uploaded models, one row each: added by the API, inspected by a worker.

Lookups take the tenant (see `jobs.store`); `get_any_tenant` is for the worker, which acts
on IDs taken from the queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from jobs.blob_refs import drop_hold
from jobs.database import Database
from jobs.idempotency import Claim, complete_claim
from jobs.records import ModelRecord
from jobs.states import ModelStatus
from jobs.tables import ModelRow, utcnow


class ModelTable:
    """Model records: add, read, list, record the inspection, delete."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(
        self,
        tenant: str,
        sha256: str,
        size: int,
        filename: str,
        hold_id: str | None = None,
        claim: Claim | None = None,
    ) -> ModelRecord:
        """Insert a model record; `hold_id` (the upload's hold) is dropped, and `claim` (its
        idempotency key) completed, in the same step.

        Raises:
            ClaimLost: the key was taken over meanwhile; nothing is written.
        """
        row = ModelRow(
            tenant=tenant,
            sha256=sha256,
            size=size,
            filename=filename,
            status=ModelStatus.PENDING.value,
        )
        with self._db.session() as session:
            session.add(row)
            session.flush()  # the ID, for the claim
            drop_hold(session, hold_id)
            complete_claim(session, claim, "model", row.id)
        return row.to_record()

    def get(self, tenant: str, model_id: str) -> ModelRecord | None:
        query = select(ModelRow).where(ModelRow.id == model_id, ModelRow.tenant == tenant)
        with self._db.session() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else row.to_record()

    def get_any_tenant(self, model_id: str) -> ModelRecord | None:
        """For the worker only: it acts on IDs taken from the queue."""
        with self._db.session() as session:
            row = session.get(ModelRow, model_id)
            return None if row is None else row.to_record()

    def set_inspected(
        self, model_id: str, status: ModelStatus, info: dict[str, Any] | None, error: str | None
    ) -> None:
        """Record the worker's inspection; a second delivery rewrites the same result."""
        statement = (
            update(ModelRow)
            .where(ModelRow.id == model_id)
            .values(status=ModelStatus(status).value, info=info, error=error)
        )
        with self._db.session() as session:
            self._db.change(session, statement)

    def delete(self, tenant: str, model_id: str) -> bool:
        statement = delete(ModelRow).where(ModelRow.id == model_id, ModelRow.tenant == tenant)
        return self._db.delete(statement)

    def withdraw(self, tenant: str, model_id: str) -> bool:
        """Delete a model no worker has taken for inspection (its message could not be
        sent); False when an inspection already claimed it."""
        statement = delete(ModelRow).where(
            ModelRow.id == model_id,
            ModelRow.tenant == tenant,
            ModelRow.status == ModelStatus.PENDING.value,
            ModelRow.inspection_started_at.is_(None),
        )
        return self._db.delete(statement)

    def stale_pending(self, older_than_seconds: float, claim_seconds: float = 0.0) -> list[str]:
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
        with self._db.session() as session:
            return list(session.scalars(query).all())

    # Last: inside the class, `list` names this method from here on.
    def list(
        self,
        tenant: str,
        limit: int,
        offset: int,
        statuses: frozenset[ModelStatus] = frozenset(),
    ) -> tuple[list[ModelRecord], int]:
        """Newest first, in any of `statuses` (all when empty); returns (page, total count)."""
        condition = ModelRow.tenant == tenant
        if statuses:
            condition &= ModelRow.status.in_(sorted(s.value for s in statuses))
        page = (
            select(ModelRow)
            .where(condition)
            # The ID breaks ties, so pages never overlap or skip a model.
            .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(ModelRow).where(condition)
        with self._db.session() as session:
            rows = [row.to_record() for row in session.scalars(page)]
            return rows, session.scalar(count) or 0
