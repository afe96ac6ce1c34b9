"""Sending the outbox: every worker's main process runs a `WebhookDispatcher` thread beside
its reaper (`jobs.reaper.Reaper` starts it), which claims due deliveries, signs and sends
them, and records each attempt.

Retries: after the n-th failed attempt the next comes `DEADWEIGHT_WEBHOOK_RETRY_SECONDS[n-1]`
seconds later (the last delay repeats: by default 5 s, 30 s, 2 min, 10 min, then hourly), until
`DEADWEIGHT_WEBHOOK_GIVE_UP_SECONDS` after the event (24 h by default); a delivery whose next
attempt would come later than that is `failed`. Any 2xx is delivered; 410 Gone ends the
delivery `failed` at once (the receiver retired the endpoint); anything else, a timeout, a
refused connection, a redirect, is a failed attempt.

The destination and the tenant's secret are checked again before every attempt: an operator
who removes a host from the allowed list stops its deliveries at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from jobs.blobs import BlobStore
from jobs.metrics_store import WEBHOOK_DELIVERIES, Tally
from jobs.results_file import read_results
from jobs.settings import Settings
from jobs.store import JobStore
from jobs.tables import utcnow
from jobs.webhook_config import (
    SECRETS_SETTING,
    WebhookEvent,
    WebhookRefused,
    check_destination,
    retry_delays,
    secret_for,
)
from jobs.webhook_outbox import iso
from jobs.webhook_sender import SendOutcome, post
from jobs.webhook_signing import message_id, signed_headers
from jobs.webhook_table import DeliveryRecord, DeliveryState

log = logging.getLogger("deadweight.webhooks")

# Attempts one pass makes at most before it looks at the clock again (the thread's stop).
CLAIM_BATCH = 16
_RECOMMENDED_FIELDS = ("index", "metric", "metric_drop", "parameters", "size_reduction", "artifact")
EXPIRE_EVERY_S = 600.0
# A receiver that answers 410 Gone has retired the endpoint (Standard Webhooks): no retry.
GONE = 410


def deliver_due(store: JobStore, blobs: BlobStore, settings: Settings) -> int:
    """One pass: up to CLAIM_BATCH due deliveries, one attempt each; returns how many.

    Each is claimed just before its attempt, so a slow receiver does not let the leases of
    deliveries still waiting in this worker run out (another worker would send them too).
    """
    # The lease outlasts the send's deadline (twice the timeout), with room to spare.
    lease = 2 * settings.webhook_timeout_seconds + 30
    sent = 0
    while sent < CLAIM_BATCH:
        claimed = store.webhooks.claim_due(1, lease)
        if not claimed:
            break
        attempt_delivery(store, blobs, settings, claimed[0])
        sent += 1
    return sent


def attempt_delivery(
    store: JobStore, blobs: BlobStore, settings: Settings, delivery: DeliveryRecord
) -> DeliveryState:
    """Send a claimed delivery once and record the attempt; returns its new state."""
    body = delivery.body
    if not delivery.attempts and delivery.event_type == WebhookEvent.SUCCEEDED.value:
        # Fixed before the first attempt, so every retry sends (and signs) the same bytes.
        body = with_recommendation(body, blobs, delivery.job_id)
    started = utcnow()
    outcome = _send(delivery, body, settings)
    attempt: dict[str, Any] = {
        "at": iso(started),
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
    }
    state, next_at = next_step(delivery, outcome, settings, utcnow())
    if not store.webhooks.record_attempt(delivery, attempt, state, next_at, body):
        log.warning("delivery %s: its lease ran out during the attempt", delivery.id)
        return state
    _count_attempt(store, state)
    if state is DeliveryState.FAILED:
        log.warning(
            "delivery %s (%s of job %s) failed for good after %d attempts: %s",
            delivery.id,
            delivery.event_type,
            delivery.job_id,
            len(delivery.attempts) + 1,
            outcome.error,
        )
    return state


# A recorded attempt's outcome on /metrics: a pending delivery failed this attempt and waits.
_OUTCOMES = {
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.PENDING: "retrying",
    DeliveryState.FAILED: "failed",
}


def _count_attempt(store: JobStore, state: DeliveryState) -> None:
    tally = Tally()
    tally.count(WEBHOOK_DELIVERIES, {"outcome": _OUTCOMES[state]})
    try:
        store.metrics.add(tally)
    except Exception as exc:  # figures are best effort; the attempt is already recorded
        log.warning("a webhook attempt was not counted on /metrics: %s", exc)


def _send(delivery: DeliveryRecord, body: str, settings: Settings) -> SendOutcome:
    try:
        check_destination(delivery.url, settings.webhook_allowed_hosts)
        secret = secret_for(delivery.tenant, settings.webhook_secrets)
        if secret is None:
            raise WebhookRefused(
                f"no secret applies to tenant {delivery.tenant!r} ({SECRETS_SETTING})"
            )
    except WebhookRefused as exc:
        return SendOutcome(None, f"not sent: {exc}", 0)
    raw = body.encode()
    msg_id = message_id(delivery.id)
    headers = signed_headers(secret, msg_id, int(time.time()), raw)
    return post(delivery.url, raw, headers, settings.webhook_timeout_seconds)


def next_step(
    delivery: DeliveryRecord, outcome: SendOutcome, settings: Settings, now: datetime
) -> tuple[DeliveryState, datetime | None]:
    """Delivered, or the time of the next attempt, or failed once the retry window is over."""
    if outcome.delivered:
        return DeliveryState.DELIVERED, None
    if outcome.status_code == GONE:  # the receiver asks to be sent nothing more
        return DeliveryState.FAILED, None
    delays = retry_delays(settings.webhook_retry_seconds)
    done = len(delivery.attempts) + 1
    next_at = now + timedelta(seconds=delays[min(done, len(delays)) - 1])
    if next_at > delivery.created_at + timedelta(seconds=settings.webhook_give_up_seconds):
        return DeliveryState.FAILED, None
    return DeliveryState.PENDING, next_at


def with_recommendation(body: str, blobs: BlobStore, job_id: str) -> str:
    """The event with the succeeded job's recommended candidate (null when none fits the
    job's budget or the results cannot be read)."""
    event = json.loads(body)
    event["data"]["recommended"] = _recommended(blobs, job_id)
    event["data"]["results"] = f"/v1/jobs/{job_id}/results"
    return json.dumps(event, separators=(",", ":"))


def _recommended(blobs: BlobStore, job_id: str) -> dict[str, Any] | None:
    results = read_results(blobs, job_id)
    if results is None or results.get("recommended") is None:
        return None
    for candidate in results.get("candidates") or []:
        if isinstance(candidate, dict) and candidate.get("index") == results["recommended"]:
            return {k: candidate.get(k) for k in _RECOMMENDED_FIELDS}
    return None


class WebhookDispatcher(threading.Thread):
    """Runs `deliver_due` every `webhook_poll_seconds` until stopped; never fatal."""

    def __init__(self, store: JobStore, blobs: BlobStore, settings: Settings) -> None:
        super().__init__(name="deadweight-webhooks", daemon=True)
        self._args = (store, blobs, settings)
        self._halt = threading.Event()
        self._failing = False
        self._expired_at: float | None = None

    def run(self) -> None:
        interval = self._args[2].webhook_poll_seconds
        while not self._halt.wait(interval):
            self.run_pass()

    def run_pass(self) -> int:
        store, _, settings = self._args
        try:
            # A full batch: more are due, go on at once.
            while (sent := deliver_due(*self._args)) == CLAIM_BATCH and not self._halt.is_set():
                pass
            now = time.monotonic()
            if self._expired_at is None or now - self._expired_at >= EXPIRE_EVERY_S:
                store.webhooks.expire(settings.retention_days)
                self._expired_at = now
        except Exception:  # the store is down: try again next time, say so once
            if not self._failing:
                log.exception("webhook dispatch failed; retrying every pass")
            self._failing = True
            return 0
        self._failing = False
        return sent

    def stop(self) -> None:
        self._halt.set()
