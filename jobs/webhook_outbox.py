"""The webhook outbox: events written with the transitions that emit them, claimed and sent
by the workers (`jobs.webhook_dispatch`), each attempt recorded.

`record_event` runs inside the transaction of the job's transition (`jobs.lifecycle`,
`jobs.reaping`): the event exists exactly when the transition committed. A delivery is
claimed with a lease (a fresh token per claim, expiring after the send's time limit), and an
attempt is recorded only by the claim that holds it, so two workers never send the same
attempt and a worker that died mid-send leaves it to the next claim: at least once.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from jobs.database import Database
from jobs.tables import JobRow, utcnow
from jobs.webhook_config import WebhookEvent, WebhookSpec, subscribed
from jobs.webhook_table import DeliveryRecord, DeliveryState, WebhookDeliveryRow


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as the events carry times."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def event_body(event: WebhookEvent, timestamp: datetime, data: dict[str, Any]) -> str:
    """The JSON an event sends: `{"type", "timestamp", "data"}` (compact, stable order)."""
    return json.dumps(
        {"type": event.value, "timestamp": iso(timestamp), "data": data},
        separators=(",", ":"),
    )


def job_data(row: JobRow) -> dict[str, Any]:
    """The job's fields every event carries; the dispatcher adds the recommended candidate
    of a succeeded job before the first attempt."""
    return {
        "id": row.id,
        "status": row.status,
        "error": row.error,
        "model_id": row.model_id,
        "dataset_id": row.dataset_id,
        "eval_dataset_id": row.eval_dataset_id,
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
    }


def record_event(session: Session, job_id: str, event: WebhookEvent | None) -> None:
    """Add the event to the outbox, in the caller's transaction, when the job's webhook asks
    for it; once per job and event (a second start of a retried job sends no second
    `job.started`)."""
    if event is None:
        return
    row = session.get(JobRow, job_id, populate_existing=True)
    if row is None:
        return
    spec = WebhookSpec.from_config(row.config or {})
    if spec is None or not subscribed(spec, event):
        return
    # The caller's conditional UPDATE holds the job's row: no concurrent writer gets here.
    exists = select(WebhookDeliveryRow.id).where(
        WebhookDeliveryRow.job_id == job_id, WebhookDeliveryRow.event_type == event.value
    )
    if session.execute(exists).first() is not None:
        return
    now = utcnow()
    session.add(
        WebhookDeliveryRow(
            tenant=row.tenant,
            job_id=job_id,
            event_type=event.value,
            url=spec.url,
            body=event_body(event, now, job_data(row)),
            state=DeliveryState.PENDING.value,
            attempts=[],
            created_at=now,
            next_attempt_at=now,
        )
    )


class WebhookOutbox:
    """The deliveries' reads and their lease-fenced writes."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def claim_due(self, limit: int, lease_seconds: float) -> list[DeliveryRecord]:
        """Claim up to `limit` due deliveries for one attempt each; returns them with this
        claim's lease token in `lease_owner`."""
        now = utcnow()
        free = or_(
            WebhookDeliveryRow.lease_expires_at.is_(None),
            WebhookDeliveryRow.lease_expires_at < now,
        )
        due = (
            select(WebhookDeliveryRow.id)
            .where(
                WebhookDeliveryRow.state == DeliveryState.PENDING.value,
                WebhookDeliveryRow.next_attempt_at <= now,
                free,
            )
            .order_by(WebhookDeliveryRow.next_attempt_at)
            .limit(limit)
        )
        with self._db.session() as session:
            found = list(session.scalars(due))
        claimed = []
        for delivery_id in found:
            token = secrets.token_hex(8)
            claim = (
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == delivery_id,
                    WebhookDeliveryRow.state == DeliveryState.PENDING.value,
                    free,
                )
                .values(lease_owner=token, lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
            with self._db.session() as session:
                if self._db.change(session, claim):
                    row = session.get(WebhookDeliveryRow, delivery_id)
                    if row is not None:
                        claimed.append(row.to_record())
        return claimed

    def record_attempt(
        self,
        claimed: DeliveryRecord,
        attempt: dict[str, Any],
        state: DeliveryState,
        next_attempt_at: datetime | None,
        body: str,
    ) -> bool:
        """Append one attempt and release the lease; False when the claim was lost (its
        lease ran out and another worker claimed the delivery)."""
        statement = (
            update(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.id == claimed.id,
                WebhookDeliveryRow.lease_owner == claimed.lease_owner,
                WebhookDeliveryRow.state == DeliveryState.PENDING.value,
            )
            .values(
                attempts=[*claimed.attempts, attempt],
                state=state.value,
                next_attempt_at=next_attempt_at,
                body=body,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        with self._db.session() as session:
            return self._db.change(session, statement)

    def for_job(self, tenant: str, job_id: str) -> list[DeliveryRecord]:
        """The job's deliveries, oldest event first."""
        query = (
            select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.tenant == tenant, WebhookDeliveryRow.job_id == job_id)
            .order_by(WebhookDeliveryRow.created_at, WebhookDeliveryRow.id)
        )
        with self._db.session() as session:
            return [row.to_record() for row in session.scalars(query)]

    def expire(self, retention_days: int) -> int:
        """Delete finished deliveries older than the retention; returns how many."""
        cutoff = utcnow() - timedelta(days=retention_days)
        statement = delete(WebhookDeliveryRow).where(
            WebhookDeliveryRow.state != DeliveryState.PENDING.value,
            WebhookDeliveryRow.created_at < cutoff,
        )
        with self._db.session() as session:
            result = session.execute(statement)
            return int(getattr(result, "rowcount", 0) or 0)
