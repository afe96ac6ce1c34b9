"""The webhook outbox on SQLite and PostgreSQL: an event is written by the transition that
emits it, once, and a delivery is claimed by one worker at a time."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from jobs.blobs import BlobStore
from jobs.settings import Settings
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.tables import utcnow
from jobs.webhook_config import WebhookEvent, WebhookSpec
from jobs.webhook_dispatch import next_step, with_recommendation
from jobs.webhook_sender import SendOutcome
from jobs.webhook_table import DeliveryState

URL = "http://127.0.0.1:9/hook"


def _job(store: JobStore, *events: WebhookEvent, webhook: bool = True) -> str:
    config: dict[str, object] = {"criterion": "seed"}
    if webhook:
        spec = WebhookSpec(URL, events) if events else WebhookSpec(URL)
        config["webhook"] = spec.to_json()
    return store.jobs.add("acme", "m" * 32, "d" * 32, None, config).id


def _events(store: JobStore, job_id: str, tenant: str = "acme") -> list[str]:
    return [d.event_type for d in store.webhooks.for_job(tenant, job_id)]


def test_each_terminal_transition_writes_its_event_once(store: JobStore) -> None:
    succeeded, failed, cancelled = _job(store), _job(store), _job(store)
    for job_id in (succeeded, failed):
        assert store.lifecycle.start(job_id) is not None
    assert _events(store, succeeded) == []  # job.started was not asked for
    assert store.lifecycle.finish(succeeded, JobStatus.SUCCEEDED)
    assert not store.lifecycle.finish(succeeded, JobStatus.FAILED, "late")  # refused: no event
    assert store.lifecycle.finish(failed, JobStatus.FAILED, "out of memory")
    store.lifecycle.request_cancel("acme", cancelled)
    store.lifecycle.request_cancel("acme", cancelled)  # already cancelled: nothing new
    assert _events(store, succeeded) == ["job.succeeded"]
    assert _events(store, failed) == ["job.failed"]
    assert _events(store, cancelled) == ["job.cancelled"]
    assert _events(store, succeeded, tenant="globex") == []  # another tenant sees nothing

    (delivery,) = store.webhooks.for_job("acme", failed)
    event = json.loads(delivery.body)
    assert event["type"] == "job.failed" and event["timestamp"].endswith("Z")
    assert event["data"]["id"] == failed and event["data"]["status"] == "failed"
    assert event["data"]["error"] == "out of memory"
    assert delivery.state is DeliveryState.PENDING and delivery.url == URL


def test_started_is_sent_once_even_when_the_job_is_retried(store: JobStore) -> None:
    job_id = _job(store, WebhookEvent.STARTED, WebhookEvent.SUCCEEDED)
    store.lifecycle.start(job_id, lease_seconds=-1)
    assert store.reaping.reap_expired(max_attempts=3).requeued == [job_id]
    store.lifecycle.start(job_id)  # attempt 2
    assert store.lifecycle.finish(job_id, JobStatus.SUCCEEDED)
    assert _events(store, job_id) == ["job.started", "job.succeeded"]


def test_the_reaper_s_verdicts_emit_events(store: JobStore) -> None:
    lost, cancel = _job(store), _job(store)
    for job_id in (lost, cancel):
        store.lifecycle.start(job_id, lease_seconds=-1)
    store.lifecycle.request_cancel("acme", cancel)
    reaped = store.reaping.reap_expired(max_attempts=1)
    assert reaped.failed == [lost] and reaped.cancelled == [cancel]
    assert _events(store, lost) == ["job.failed"]
    assert _events(store, cancel) == ["job.cancelled"]


def test_jobs_without_a_webhook_write_nothing(store: JobStore) -> None:
    job_id = _job(store, webhook=False)
    store.lifecycle.start(job_id)
    store.lifecycle.finish(job_id, JobStatus.SUCCEEDED)
    assert _events(store, job_id) == []
    assert store.webhooks.claim_due(10, 60) == []


def test_one_claim_at_a_time_and_only_the_claim_records(store: JobStore) -> None:
    job_id = _job(store)
    store.lifecycle.request_cancel("acme", job_id)
    (first,) = store.webhooks.claim_due(10, lease_seconds=-1)  # a lease already over
    (second,) = store.webhooks.claim_due(10, lease_seconds=60)  # so another worker takes it
    assert store.webhooks.claim_due(10, lease_seconds=60) == []  # held now
    attempt = {"at": "2026-01-01T00:00:00Z", "status_code": 204, "error": None, "duration_ms": 3}
    # The first worker's lease is gone: its record is refused.
    assert not store.webhooks.record_attempt(first, attempt, DeliveryState.DELIVERED, None, "{}")
    later = utcnow() + timedelta(hours=1)
    assert store.webhooks.record_attempt(second, attempt, DeliveryState.PENDING, later, second.body)
    assert store.webhooks.claim_due(10, 60) == []  # not due before `later`
    (stored,) = store.webhooks.for_job("acme", job_id)
    assert stored.attempts == [attempt] and stored.next_attempt_at == later
    assert stored.lease_owner is None


def test_retry_schedule_and_giving_up(store: JobStore) -> None:
    job_id = _job(store)
    store.lifecycle.request_cancel("acme", job_id)
    (delivery,) = store.webhooks.for_job("acme", job_id)
    settings = Settings(webhook_retry_seconds="5,30", webhook_give_up_seconds=100)
    failed, ok = SendOutcome(None, "refused", 1), SendOutcome(204, None, 1)
    now = delivery.created_at
    assert next_step(delivery, ok, settings, now) == (DeliveryState.DELIVERED, None)
    gone = SendOutcome(410, "410 Gone", 1)  # a retired endpoint: no retry
    assert next_step(delivery, gone, settings, now) == (DeliveryState.FAILED, None)
    assert next_step(delivery, failed, settings, now) == (
        DeliveryState.PENDING,
        now + timedelta(seconds=5),
    )
    two = {"at": "", "status_code": None, "error": "x", "duration_ms": 0}
    retried = type(delivery)(**{**vars(delivery), "attempts": [two, two]})
    # The last delay repeats...
    assert next_step(retried, failed, settings, now)[1] == now + timedelta(seconds=30)
    # ...until the next attempt would come after the window.
    assert next_step(retried, failed, settings, now + timedelta(seconds=71)) == (
        DeliveryState.FAILED,
        None,
    )


def test_a_succeeded_event_names_the_recommended_candidate(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    folder = blobs.job_dir("a" * 32)
    folder.mkdir(parents=True)
    candidate = {"index": 1, "metric": 0.9, "metric_drop": 0.01, "parameters": 10}
    candidate |= {"size_reduction": 0.5, "artifact": "pruned-1.pt2", "kept": {"fc1": 3}}
    results = {"candidates": [{"index": 0}, candidate], "recommended": 1}
    (folder / "results.json").write_text(json.dumps(results))
    body = json.dumps({"type": "job.succeeded", "timestamp": "t", "data": {"id": "a" * 32}})
    data = json.loads(with_recommendation(body, blobs, "a" * 32))["data"]
    assert data["recommended"] == {k: v for k, v in candidate.items() if k != "kept"}
    assert data["results"] == f"/v1/jobs/{'a' * 32}/results"
    # No results (or none recommended): null, not an error.
    assert json.loads(with_recommendation(body, blobs, "b" * 32))["data"]["recommended"] is None
