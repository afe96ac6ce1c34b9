"""What each tenant holds and has in flight: the figures behind quotas and per-tenant limits."""

from __future__ import annotations

from sqlalchemy import func, select, update

from jobs.blobs import BlobStore
from jobs.database import Database
from jobs.states import ACTIVE_STATUSES, TERMINAL_STATUSES, ModelStatus
from jobs.tables import DatasetRow, JobRow, ModelRow, UploadHoldRow


class TenantUsage:
    """Per-tenant sums and counts, each one query."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def stored_bytes(self, tenant: str) -> int:
        """Bytes the tenant keeps: its uploads (shared blobs count for every tenant that
        uploaded them), uploads being validated, and the counted outputs of its jobs."""
        sums = [
            select(func.coalesce(func.sum(row.size), 0)).where(row.tenant == tenant)
            for row in (ModelRow, DatasetRow, UploadHoldRow)
        ]
        outputs = select(func.coalesce(func.sum(JobRow.output_bytes), 0)).where(
            JobRow.tenant == tenant
        )
        with self._db.session() as session:
            return sum(int(session.scalar(query) or 0) for query in [*sums, outputs])

    def jobs_without_output_bytes(self, tenant: str) -> list[str]:
        """The tenant's ended jobs whose published bytes were not counted yet."""
        terminal = [s.value for s in TERMINAL_STATUSES]
        query = select(JobRow.id).where(
            JobRow.tenant == tenant, JobRow.status.in_(terminal), JobRow.output_bytes.is_(None)
        )
        with self._db.session() as session:
            return list(session.scalars(query).all())

    def set_output_bytes(self, job_id: str, size: int) -> None:
        """Record what an ended job published (its files never change afterwards)."""
        with self._db.session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(output_bytes=size))

    def jobs_in_flight(self, tenant: str) -> int:
        """The tenant's queued and running jobs."""
        query = select(func.count()).where(
            JobRow.tenant == tenant, JobRow.status.in_(sorted(ACTIVE_STATUSES))
        )
        with self._db.session() as session:
            return int(session.scalar(query) or 0)

    def pending_inspections(self, tenant: str) -> int:
        """The tenant's models waiting for, or in, their inspection."""
        query = select(func.count()).where(
            ModelRow.tenant == tenant, ModelRow.status == ModelStatus.PENDING.value
        )
        with self._db.session() as session:
            return int(session.scalar(query) or 0)


def tenant_stored_bytes(usage: TenantUsage, blobs: BlobStore, tenant: str) -> int:
    """The tenant's stored bytes; ended jobs' outputs are measured once, then remembered."""
    for job_id in usage.jobs_without_output_bytes(tenant):
        usage.set_output_bytes(job_id, sum(a.bytes for a in blobs.list_artifacts(job_id)))
    return usage.stored_bytes(tenant)


def quota_left(usage: TenantUsage, blobs: BlobStore, tenant: str, quota: int) -> int | None:
    """Bytes the tenant may still store under `quota` (0: no quota, None)."""
    if not quota:
        return None
    return max(0, quota - tenant_stored_bytes(usage, blobs, tenant))
