"""Uploaded datasets, one row each, described when the API validated the file.

Lookups take the tenant (see `jobs.store`); `get_any_tenant` is for the worker, which acts
on IDs taken from the queue.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select

from jobs.blob_refs import drop_hold
from jobs.database import Database
from jobs.idempotency import Claim, complete_claim
from jobs.records import DatasetRecord
from jobs.tables import DatasetRow


class DatasetTable:
    """Dataset records: add, read, list, delete."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(
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
        claim: Claim | None = None,
    ) -> DatasetRecord:
        """Insert a dataset record; `hold_id` (the upload's hold) is dropped, and `claim` (its
        idempotency key) completed, in the same step.

        Raises:
            ClaimLost: the key was taken over meanwhile; nothing is written.
        """
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
        with self._db.session() as session:
            session.add(row)
            session.flush()  # the ID, for the claim
            drop_hold(session, hold_id)
            complete_claim(session, claim, "dataset", row.id)
        return row.to_record()

    def list(self, tenant: str, limit: int, offset: int) -> tuple[list[DatasetRecord], int]:
        """Newest first; returns (page, total count)."""
        page = (
            select(DatasetRow)
            .where(DatasetRow.tenant == tenant)
            # The ID breaks ties, so pages never overlap or skip a dataset.
            .order_by(DatasetRow.created_at.desc(), DatasetRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(DatasetRow).where(DatasetRow.tenant == tenant)
        with self._db.session() as session:
            rows = [row.to_record() for row in session.scalars(page)]
            return rows, session.scalar(count) or 0

    def get(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        query = select(DatasetRow).where(DatasetRow.id == dataset_id, DatasetRow.tenant == tenant)
        with self._db.session() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else row.to_record()

    def get_any_tenant(self, dataset_id: str) -> DatasetRecord | None:
        with self._db.session() as session:
            row = session.get(DatasetRow, dataset_id)
            return None if row is None else row.to_record()

    def delete(self, tenant: str, dataset_id: str) -> bool:
        statement = delete(DatasetRow).where(
            DatasetRow.id == dataset_id, DatasetRow.tenant == tenant
        )
        return self._db.delete(statement)
