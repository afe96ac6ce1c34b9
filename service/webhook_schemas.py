"""A job's webhook as a request gives it, and its deliveries as `GET /v1/jobs/{id}/deliveries`
shows them (see the README's Webhooks section)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import Field

from jobs.webhook_config import MAX_URL_LENGTH, TERMINAL_EVENTS, WebhookEvent, WebhookSpec
from jobs.webhook_signing import message_id
from jobs.webhook_table import DeliveryRecord, DeliveryState
from service.schemas import InputSchema, Schema, utc, utc_or_none


class WebhookIn(InputSchema):
    """Where the job's events go; signed with the tenant's DEADWEIGHT_WEBHOOK_SECRETS entry."""

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http(s) URL on a host in DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS",
        examples=["https://hooks.example.com/deadweight"],
    )
    events: list[WebhookEvent] | None = Field(
        None,
        min_length=1,
        description="omitted: job.succeeded, job.failed, job.cancelled; add job.started to "
        "hear when a worker starts the job",
    )

    def spec(self) -> WebhookSpec:
        # Each event once, in the order given.
        events = tuple(dict.fromkeys(self.events)) if self.events else TERMINAL_EVENTS
        return WebhookSpec(url=self.url, events=events)


class DeliveryAttemptPublic(Schema):
    at: datetime
    status_code: int | None = Field(description="the receiver's answer; null: none came")
    error: str | None = Field(description="null when the receiver answered 2xx")
    duration_ms: int


class DeliveryPublic(Schema):
    """One event's delivery: pending (attempts continue), delivered (a 2xx) or failed."""

    id: str
    event_type: WebhookEvent
    webhook_id: str = Field(description="the webhook-id header, the same on every retry")
    url: str
    state: DeliveryState
    created_at: datetime = Field(description="when the event happened")
    next_attempt_at: datetime | None
    attempts: list[DeliveryAttemptPublic]

    @classmethod
    def from_record(cls, record: DeliveryRecord) -> Self:
        return cls(
            id=record.id,
            event_type=WebhookEvent(record.event_type),
            webhook_id=message_id(record.id),
            url=record.url,
            state=record.state,
            created_at=utc(record.created_at),
            next_attempt_at=utc_or_none(record.next_attempt_at),
            attempts=[_attempt(a) for a in record.attempts],
        )


def _attempt(raw: dict[str, Any]) -> DeliveryAttemptPublic:
    return DeliveryAttemptPublic(
        at=datetime.fromisoformat(str(raw["at"]).replace("Z", "+00:00")),
        status_code=raw.get("status_code"),
        error=raw.get("error"),
        duration_ms=int(raw.get("duration_ms") or 0),
    )


class DeliveriesPublic(Schema):
    data: list[DeliveryPublic]
    count: int
