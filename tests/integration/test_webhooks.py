"""Webhooks with real processes: a receiver on 127.0.0.1 (tests.integration.webhook_receiver)
gets exactly the documented, verifiable signature, once, even when it is down at first."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from jobs.blobs import BlobStore
from jobs.settings import Settings
from jobs.store import JobStore
from jobs.webhook_config import WebhookEvent, WebhookSpec
from jobs.webhook_dispatch import deliver_due
from jobs.webhook_table import DeliveryState
from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http
from tests.integration.webhook_helpers import SECRET, received, receiver, verify

pytestmark = pytest.mark.integration


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    job_store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job_store.migrate()
    yield job_store
    job_store.dispose()


def _cancelled_job(store: JobStore, url: str) -> str:
    config = {"webhook": WebhookSpec(url).to_json()}
    job_id = store.jobs.add("default", "m" * 32, "d" * 32, None, config).id
    store.lifecycle.request_cancel("default", job_id)
    return job_id


def test_retries_until_a_late_receiver_gets_it_once(store: JobStore, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "received.jsonl"
    settings = Settings(
        data_dir=tmp_path,
        webhook_secrets=f"*={SECRET}",
        webhook_allowed_hosts=f"127.0.0.1:{port}",
        webhook_retry_seconds="0.2",
        webhook_timeout_seconds=2,
    )
    blobs = BlobStore(tmp_path)
    job_id = _cancelled_job(store, f"http://127.0.0.1:{port}/hooks?src=dw")
    for _ in range(2):  # the receiver is down: refused connections, retried
        _until(lambda: deliver_due(store, blobs, settings), 5, "a due retry")
    (pending,) = store.webhooks.for_job("default", job_id)
    assert pending.state is DeliveryState.PENDING and len(pending.attempts) == 2
    assert all(a["status_code"] is None and a["error"] for a in pending.attempts)

    with receiver(port, log):
        _until(lambda: deliver_due(store, blobs, settings), 5, "the third attempt")
        for _ in range(5):  # delivered: later passes send nothing more
            deliver_due(store, blobs, settings)
            time.sleep(0.1)
    (request,) = received(log)
    event = verify(request, SECRET)
    assert request["path"] == "/hooks?src=dw"
    assert event["type"] == "job.cancelled" and event["timestamp"].endswith("Z")
    assert event["data"]["id"] == job_id and event["data"]["status"] == "cancelled"
    (done,) = store.webhooks.for_job("default", job_id)
    assert done.state is DeliveryState.DELIVERED and len(done.attempts) == 3
    assert done.attempts[-1]["status_code"] == 204 and done.attempts[-1]["error"] is None
    assert request["headers"]["webhook-id"] == "msg_" + done.id
    # Each recorded attempt counted for /metrics (jobs.metrics_store), by its outcome.
    counted = {
        labels["outcome"]: value
        for name, labels, value in store.metrics.series()
        if name == "deadweight_webhook_deliveries_total"
    }
    assert counted == {"retrying": 2, "delivered": 1}


def test_redirects_are_not_followed_and_hosts_are_checked_again(
    store: JobStore, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "received.jsonl"
    base = {"data_dir": tmp_path, "webhook_secrets": f"*={SECRET}", "webhook_timeout_seconds": 2}
    blobs = BlobStore(tmp_path)
    redirected = _cancelled_job(store, f"http://127.0.0.1:{port}/a")
    with receiver(port, log, status=302):
        assert deliver_due(store, blobs, Settings(**base, webhook_allowed_hosts="127.0.0.1")) == 1
        # The operator no longer allows the host: nothing is sent, the attempt says why.
        later = _cancelled_job(store, f"http://127.0.0.1:{port}/b")
        assert deliver_due(store, blobs, Settings(**base, webhook_allowed_hosts="10.0.0.1")) == 1
    assert [r["path"] for r in received(log)] == ["/a"]  # /redirected never asked for
    (first,) = store.webhooks.for_job("default", redirected)
    assert first.attempts[0]["status_code"] == 302
    assert "redirects are not followed" in first.attempts[0]["error"]
    (second,) = store.webhooks.for_job("default", later)
    assert second.attempts[0]["error"].startswith("not sent: webhook host 127.0.0.1:")
    assert second.state is DeliveryState.PENDING  # retried: the setting may come back


def test_a_receiver_that_trickles_its_answer_is_cut_off(store: JobStore, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "received.jsonl"
    settings = Settings(
        data_dir=tmp_path,
        webhook_secrets=f"*={SECRET}",
        webhook_allowed_hosts="127.0.0.1",
        webhook_timeout_seconds=0.6,  # each byte comes within it; the whole answer does not
    )
    job_id = _cancelled_job(store, f"http://127.0.0.1:{port}/slow")
    with receiver(port, log, status=0):
        started = time.monotonic()
        assert deliver_due(store, BlobStore(tmp_path), settings) == 1
        assert time.monotonic() - started < 5
    (delivery,) = store.webhooks.for_job("default", job_id)
    assert delivery.state is DeliveryState.PENDING and delivery.attempts[0]["status_code"] is None
    assert delivery.attempts[0]["error"]


def _model(tmp_path: Path) -> Path:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model.eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, path)
    return path


def _dataset() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, x=rng.normal(size=(64, 4)).astype(np.float32), y=rng.integers(0, 3, size=64))
    return buf.getvalue()


def test_a_job_s_events_through_the_service_and_its_worker(
    processes: Processes, tmp_path: Path
) -> None:
    api_port, hook_port, log = free_port(), free_port(), tmp_path / "received.jsonl"
    env = base_env(tmp_path / "data")
    env |= {
        "DEADWEIGHT_WEBHOOK_SECRETS": f"*={SECRET}",
        "DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS": f"127.0.0.1:{hook_port}",
        "DEADWEIGHT_WEBHOOK_RETRY_SECONDS": "1",
        "DEADWEIGHT_WEBHOOK_TIMEOUT_SECONDS": "2",
        "DEADWEIGHT_WEBHOOK_POLL_SECONDS": "0.2",
    }
    api = processes.start("serve", [DEADWEIGHT, "serve", "--port", str(api_port)], env)
    wait_http(f"http://127.0.0.1:{api_port}/readyz", api, processes)
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
        files = {"file": ("mlp.pt2", _model(tmp_path).read_bytes())}
        model = client.post("/v1/models", files=files).json()
        data = client.post("/v1/datasets", files={"file": ("d.npz", _dataset())}).json()
        ready = lambda: client.get(f"/v1/models/{model['id']}").json()["status"] != "pending"  # noqa: E731
        _until(ready, 120, f"the model's inspection\n{processes.dump_logs()}")
        events = [e.value for e in WebhookEvent if e is not WebhookEvent.CANCELLED]
        hook = {"url": f"http://127.0.0.1:{hook_port}/deadweight", "events": events}
        body = {"model_id": model["id"], "dataset_id": data["id"], "webhook": hook}
        response = client.post("/v1/jobs", json={**body, "thresholds": [{"fraction": 0.3}]})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        route = f"/v1/jobs/{job_id}/deliveries"

        def tried_both() -> bool:
            found = client.get(route).json()["data"]
            return len(found) == 2 and all(d["attempts"] for d in found)

        # The receiver is not up yet: both events fail at least once.
        _until(tried_both, 180, f"a first attempt at both events\n{processes.dump_logs()}")
        with receiver(hook_port, log):
            delivered = lambda: all(  # noqa: E731
                d["state"] == "delivered" for d in client.get(route).json()["data"]
            )
            _until(delivered, 30, "the events' delivery")
            time.sleep(1.5)  # more passes: nothing is sent twice
        deliveries = client.get(route).json()["data"]

    requests = received(log)
    assert sorted(r["headers"]["webhook-id"] for r in requests) == sorted(
        d["webhook_id"] for d in deliveries
    )
    by_type = {e["type"]: e for e in (verify(r, SECRET) for r in requests)}
    assert set(by_type) == {"job.started", "job.succeeded"}
    assert by_type["job.started"]["data"]["status"] == "running"
    succeeded = by_type["job.succeeded"]["data"]
    assert succeeded["id"] == job_id and succeeded["status"] == "succeeded"
    assert "recommended" in succeeded and succeeded["results"] == f"/v1/jobs/{job_id}/results"
    for delivery in deliveries:
        failures, last = delivery["attempts"][:-1], delivery["attempts"][-1]
        assert failures and all(a["error"] and a["status_code"] is None for a in failures)
        assert last["status_code"] == 204 and last["error"] is None
