"""Fair turns between tenants: which queued job, or pending inspection, a worker takes.

A Celery message names one job (or model), but the worker that receives it starts the
fairest waiting one instead. Tenants take turns: first the tenant with the fewest running
now, then the one served least recently (never served first), then the named record, then
the oldest. So with one worker, tenant A's backlog of twenty jobs runs as A, B, A, A, ...
when B submits one, instead of twenty A's before B.

Nothing is left behind: every waiting record has at least one message, and a message
starts exactly one record while any is waiting (a worker that loses a race to another
chooses again, and each lost race means another worker started something). With a single
tenant the named job runs, exactly as without this module.

A claim is idempotent for its owner: a worker whose claim committed but whose reply was
lost in a database outage retries and gets its own claim back, not a second job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from jobs.database import Database
from jobs.lifecycle import JobLifecycle
from jobs.records import JobRecord, ModelRecord
from jobs.states import JobStatus, ModelStatus
from jobs.tables import JobRow, ModelRow, utcnow


class Scheduling:
    """Fair claims: the job a worker starts, the model it inspects, whatever it was sent."""

    def __init__(self, database: Database, lifecycle: JobLifecycle) -> None:
        self._db = database
        self._lifecycle = lifecycle

    def start_fair_job(
        self, hint_id: str, owner: str = "worker", lease_seconds: int = 60
    ) -> JobRecord | None:
        """Start (see `JobLifecycle.start`) the fairest queued job; None when nothing is queued.

        `owner` must name this attempt's worker alone (host and process): a job it already
        holds is returned as it is (the retry of a claim whose reply was lost).
        """
        mine = self._running_for(owner)
        if mine is not None:
            return mine
        while True:
            job_id = self._fairest_queued_job(hint_id)
            if job_id is None:
                return None
            started = self._lifecycle.start(job_id, owner=owner, lease_seconds=lease_seconds)
            if started is not None:
                return started
            # Another worker started that one first: choose again.

    def claim_fair_inspection(self, hint_id: str, time_limit_s: float) -> ModelRecord | None:
        """Take the fairest pending model for inspection; None when none is waiting.

        A claim older than `time_limit_s` belongs to a worker that died mid-inspection
        (the inspection is killed at that age), so it can be taken again.
        """
        while True:
            now = utcnow()
            unclaimed = _unclaimed(now - timedelta(seconds=time_limit_s))
            with self._db.session() as session:
                model_id = _fairest_pending_model(session, hint_id, unclaimed, now, time_limit_s)
                if model_id is None:
                    return None
                statement = (
                    update(ModelRow)
                    .where(ModelRow.id == model_id, unclaimed)
                    .values(inspection_started_at=now)
                )
                if self._db.change(session, statement):
                    row = session.get(ModelRow, model_id)
                    return None if row is None else row.to_record()

    def _running_for(self, owner: str) -> JobRecord | None:
        query = select(JobRow).where(
            JobRow.status == JobStatus.RUNNING.value, JobRow.lease_owner == owner[:255]
        )
        with self._db.session() as session:
            row = session.scalars(query.limit(1)).one_or_none()
            return None if row is None else row.to_record()

    def _fairest_queued_job(self, hint_id: str) -> str | None:
        tenants = (
            select(
                JobRow.tenant,
                func.count().filter(JobRow.status == JobStatus.RUNNING.value).label("busy"),
                func.max(JobRow.started_at).label("served"),
            )
            .group_by(JobRow.tenant)
            .subquery()
        )
        query = (
            select(JobRow.id)
            .join(tenants, tenants.c.tenant == JobRow.tenant)
            .where(JobRow.status == JobStatus.QUEUED.value)
            .order_by(*_fair_order(tenants.c.busy, tenants.c.served, JobRow.id == hint_id, JobRow))
            .limit(1)
        )
        with self._db.session() as session:
            return session.scalar(query)


def _unclaimed(stale_before: datetime) -> ColumnElement[bool]:
    return and_(
        ModelRow.status == ModelStatus.PENDING.value,
        or_(
            ModelRow.inspection_started_at.is_(None),
            ModelRow.inspection_started_at < stale_before,
        ),
    )


def _fairest_pending_model(
    session: Session, hint_id: str, unclaimed: ColumnElement[bool], now: datetime, limit_s: float
) -> str | None:
    live_claim = and_(
        ModelRow.status == ModelStatus.PENDING.value,
        ModelRow.inspection_started_at >= now - timedelta(seconds=limit_s),
    )
    tenants = (
        select(
            ModelRow.tenant,
            func.count().filter(live_claim).label("busy"),
            func.max(ModelRow.inspection_started_at).label("served"),
        )
        .group_by(ModelRow.tenant)
        .subquery()
    )
    query = (
        select(ModelRow.id)
        .join(tenants, tenants.c.tenant == ModelRow.tenant)
        .where(unclaimed)
        .order_by(*_fair_order(tenants.c.busy, tenants.c.served, ModelRow.id == hint_id, ModelRow))
        .limit(1)
    )
    return session.scalar(query)


def _fair_order(busy: Any, served: Any, is_hint: ColumnElement[bool], row: Any) -> list[Any]:
    # Fewest in progress for the tenant; then the tenant served least recently (never
    # served first); the message's own record first among equals; then the oldest; the
    # ID breaks ties between rows of the same microsecond.
    return [
        busy,
        case((served.is_(None), 0), else_=1),
        served,
        case((is_hint, 0), else_=1),
        row.created_at,
        row.id,
    ]
