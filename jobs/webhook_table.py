"""The webhook outbox's table: one row per event a job's webhook is to receive.

A row is written in the same transaction as the job's transition that emits the event
(`jobs.webhook_outbox.record_event`), so a job never ends without its event on record, and
a worker that dies mid-send leaves the row to be claimed again once its lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jobs.tables import ID_LENGTH, Base, UTCDateTime, new_id, utcnow


# A delivery is pending until one attempt got a 2xx (delivered) or its time ran out (failed).
class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryRecord:
    """One event's delivery: what is sent, to where, and every attempt so far."""

    id: str
    tenant: str
    job_id: str
    event_type: str
    url: str
    body: str
    state: DeliveryState
    # Each: {"at": ISO time, "status_code": int | None, "error": str | None, "duration_ms"}.
    attempts: list[dict[str, Any]]
    created_at: datetime
    next_attempt_at: datetime | None
    lease_owner: str | None = None


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One delivery per job and event: a transition replayed cannot send an event twice.
        UniqueConstraint("job_id", "event_type"),
        # The dispatcher's question: which pending deliveries are due?
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    # No foreign key: the record of what was sent outlives a deleted job until retention.
    job_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    event_type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    # The exact JSON sent (and signed); every retry sends the same bytes.
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The worker sending the current attempt, until when: no two send the same attempt.
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_record(self) -> DeliveryRecord:
        return DeliveryRecord(
            id=self.id,
            tenant=self.tenant,
            job_id=self.job_id,
            event_type=self.event_type,
            url=self.url,
            body=self.body,
            state=DeliveryState(self.state),
            attempts=list(self.attempts),
            created_at=self.created_at,
            next_attempt_at=self.next_attempt_at,
            lease_owner=self.lease_owner,
        )
