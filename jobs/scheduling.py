"""Fair ordering between tenants: which queued job, or pending inspection, a worker takes.

A Celery message names one job (or model), but a worker that receives it starts the fairest
waiting one instead: the oldest of the tenant with the fewest running, the named one first
among equals. Every waiting job has at least one message, and every message starts at most
one job, so nothing is left behind, while one tenant's backlog of twenty jobs (or model
uploads) no longer holds up another tenant's first one. With a single tenant the named job
runs, exactly as before.

Each start is a conditional UPDATE on the row as read; losing a race to another worker
means choosing again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from jobs.lifecycle import JobLifecycle
from jobs.records import JobRecord, ModelRecord
from jobs.states import JobStatus, ModelStatus
from jobs.tables import JobRow, ModelRow, utcnow

# Rows a worker may lose to other workers before it gives up on this message.
_TRIES = 8


class Scheduling(JobLifecycle):
    def start_fair_job(
        self, hint_id: str, owner: str = "worker", lease_seconds: int = 60
    ) -> JobRecord | None:
        """Start (see `start_job`) the fairest queued job; None when nothing is queued."""
        for _ in range(_TRIES):
            job_id = self._fairest_queued_job(hint_id)
            if job_id is None:
                return None
            started = self.start_job(job_id, owner=owner, lease_seconds=lease_seconds)
            if started is not None:
                return started
        return None

    def claim_fair_inspection(self, hint_id: str, time_limit_s: float) -> ModelRecord | None:
        """Take the fairest pending model for inspection; None when none is waiting.

        A claim older than `time_limit_s` belongs to a worker that died mid-inspection
        (the inspection is killed at that age), so it can be taken again.
        """
        for _ in range(_TRIES):
            now = utcnow()
            unclaimed = _unclaimed(now - timedelta(seconds=time_limit_s))
            with self._session() as session:
                model_id = _fairest_pending_model(session, hint_id, unclaimed, now, time_limit_s)
                if model_id is None:
                    return None
                statement = (
                    update(ModelRow)
                    .where(ModelRow.id == model_id, unclaimed)
                    .values(inspection_started_at=now)
                )
                if self._change(session, statement):
                    row = session.get(ModelRow, model_id)
                    return None if row is None else row.to_record()
        return None

    def _fairest_queued_job(self, hint_id: str) -> str | None:
        running = (
            select(JobRow.tenant, func.count().label("n"))
            .where(JobRow.status == JobStatus.RUNNING.value)
            .group_by(JobRow.tenant)
            .subquery()
        )
        query = (
            select(JobRow.id)
            .outerjoin(running, running.c.tenant == JobRow.tenant)
            .where(JobRow.status == JobStatus.QUEUED.value)
            .order_by(*_fair_order(func.coalesce(running.c.n, 0), JobRow.id == hint_id, JobRow))
            .limit(1)
        )
        with self._session() as session:
            return session.scalar(query)


def _unclaimed(stale_before: Any) -> ColumnElement[bool]:
    return and_(
        ModelRow.status == ModelStatus.PENDING.value,
        or_(
            ModelRow.inspection_started_at.is_(None),
            ModelRow.inspection_started_at < stale_before,
        ),
    )


def _fairest_pending_model(
    session: Session, hint_id: str, unclaimed: ColumnElement[bool], now: Any, limit_s: float
) -> str | None:
    live_claim = and_(
        ModelRow.status == ModelStatus.PENDING.value,
        ModelRow.inspection_started_at >= now - timedelta(seconds=limit_s),
    )
    inspecting = (
        select(ModelRow.tenant, func.count().label("n"))
        .where(live_claim)
        .group_by(ModelRow.tenant)
        .subquery()
    )
    query = (
        select(ModelRow.id)
        .outerjoin(inspecting, inspecting.c.tenant == ModelRow.tenant)
        .where(unclaimed)
        .order_by(*_fair_order(func.coalesce(inspecting.c.n, 0), ModelRow.id == hint_id, ModelRow))
        .limit(1)
    )
    return session.scalar(query)


def _fair_order(busy: Any, is_hint: ColumnElement[bool], row: Any) -> list[Any]:
    # Fewest in progress for the tenant first; the message's own record first among equals;
    # then the oldest; the ID breaks ties between rows of the same microsecond.
    return [busy, case((is_hint, 0), else_=1), row.created_at, row.id]
