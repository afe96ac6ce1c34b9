"""POST /v1/jobs with a webhook: refused at the door unless this server may call the host and
has a secret for the tenant; the job's deliveries at GET /v1/jobs/{id}/deliveries."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.states import JobStatus, ModelStatus
from tests.integration.webhook_helpers import OTHER_SECRET, SECRET
from tests.service.api_helpers import ClientFactory, new_dataset, new_model, publish_job

HOOK = "http://127.0.0.1:8999/hook"
KEYS = "acme=key-acme-0123456789,globex=key-globex-9876543210"
ACME = {"Authorization": "Bearer key-acme-0123456789"}
GLOBEX = {"Authorization": "Bearer key-globex-9876543210"}
INFO = {"parameters": 67, "inputs": [{"shape": [None, 4]}], "layers": [], "frozen": []}


# Each test's uploads, by API key: made on a tenant's first job (validation takes a while).
_uploads: dict[str, dict[str, str]] = {}


@pytest.fixture(autouse=True)
def _fresh_uploads() -> None:
    _uploads.clear()


def _submit(client: TestClient, model_bytes: bytes, headers: Any = None, **fields: Any) -> Any:
    client.headers.update(headers or {})
    tenant = client.headers.get("authorization", "")
    uploads = _uploads
    if tenant not in uploads:
        model = new_model(client, model_bytes)["id"]
        client.app.state.store.models.set_inspected(model, ModelStatus.READY, INFO, None)
        uploads[tenant] = {"model_id": model, "dataset_id": new_dataset(client)["id"]}
    return client.post("/v1/jobs", json={**uploads[tenant], **fields})


def _refusal(response: Any) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_webhook"
    message: str = error["message"]
    return message


def test_webhooks_are_off_until_hosts_are_allowed(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(webhook_secrets=f"*={SECRET}")
    message = _refusal(_submit(client, model_bytes, webhook={"url": HOOK}))
    assert "DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS is not set" in message
    assert client.get("/v1/jobs").json()["count"] == 0  # nothing stored


def test_hosts_ports_schemes_and_credentials_are_checked(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(webhook_secrets=f"*={SECRET}", webhook_allowed_hosts="127.0.0.1:8999")
    refused = {
        "http://127.0.0.1:8998/hook": "127.0.0.1:8998 is not allowed",
        "http://localhost:8999/hook": "localhost:8999 is not allowed",  # no resolving
        "http://u:p@127.0.0.1:8999/hook": "credentials",
        "gopher://127.0.0.1:8999/": "http:// or https://",
    }
    for url, expected in refused.items():
        assert expected in _refusal(_submit(client, model_bytes, webhook={"url": url}))
    response = _submit(client, model_bytes, webhook={"url": HOOK, "events": ["job.started"]})
    assert response.status_code == 202, response.text
    assert response.json()["config"]["webhook"] == {"url": HOOK, "events": ["job.started"]}
    # Unknown events and fields are the schema's 422s.
    bad = _submit(client, model_bytes, webhook={"url": HOOK, "events": ["job.deleted"]})
    assert bad.status_code == 422
    assert _submit(client, model_bytes, webhook={"url": HOOK, "secret": "x"}).status_code == 422


def test_a_tenant_without_a_secret_is_refused(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(
        api_keys=KEYS, webhook_secrets=f"acme={SECRET}", webhook_allowed_hosts="127.0.0.1"
    )
    message = _refusal(_submit(client, model_bytes, GLOBEX, webhook={"url": HOOK}))
    assert "DEADWEIGHT_WEBHOOK_SECRETS" in message and "globex" in message
    assert _submit(client, model_bytes, ACME, webhook={"url": HOOK}).status_code == 202


def test_deliveries_are_the_tenant_s_own(make_client: ClientFactory, model_bytes: bytes) -> None:
    client = make_client(
        api_keys=KEYS,
        webhook_secrets=f"acme={SECRET},*={OTHER_SECRET}",
        webhook_allowed_hosts="127.0.0.1",
    )
    job = _submit(client, model_bytes, ACME, webhook={"url": HOOK}).json()
    plain = _submit(client, model_bytes, ACME).json()
    assert client.get(f"/v1/jobs/{job['id']}/deliveries").json() == {"data": [], "count": 0}
    publish_job(client, job["id"])
    publish_job(client, plain["id"])

    listed = client.get(f"/v1/jobs/{job['id']}/deliveries").json()
    assert listed["count"] == 1
    (delivery,) = listed["data"]
    assert delivery["event_type"] == "job.succeeded" and delivery["state"] == "pending"
    assert delivery["webhook_id"] == "msg_" + delivery["id"]
    assert delivery["url"] == HOOK and delivery["attempts"] == []
    assert client.get(f"/v1/jobs/{plain['id']}/deliveries").json()["count"] == 0

    client.headers.update(GLOBEX)
    assert client.get(f"/v1/jobs/{job['id']}/deliveries").status_code == 404
    assert client.get(f"/v1/jobs/{'0' * 32}/deliveries").status_code == 404
    assert client.app.state.store.jobs.get("acme", job["id"]).status is JobStatus.SUCCEEDED
