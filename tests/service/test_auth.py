"""API keys and tenants: 401 without a valid key, 404 across tenants, own listings only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.states import ModelStatus
from service.auth import KeyRing, is_loopback
from tests.service.api_helpers import ClientFactory, npz_bytes, publish_job

KEYS = "alpha=key-alpha-0123456789,beta=key-beta-9876543210"
ALPHA = {"Authorization": "Bearer key-alpha-0123456789"}
BETA = {"Authorization": "Bearer key-beta-9876543210"}
MISSING_ID = "0" * 32


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client(api_keys=KEYS)


def _upload(client: TestClient, kind: str, data: bytes, headers: dict[str, str]) -> Any:
    files = {"file": (f"f.{'pt2' if kind == 'models' else 'npz'}", data)}
    return client.post(f"/v1/{kind}", files=files, headers=headers)


def _resource_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every /v1 operation of the OpenAPI document, with IDs that exist nowhere."""
    routes = []
    for template, operations in client.app.openapi()["paths"].items():
        if template.startswith("/v1/"):
            path = re.sub(r"\{[a-z_]+\}", MISSING_ID, template)
            routes += [(method.upper(), path) for method in sorted(operations)]
    return routes


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic a2V5LWFscGhhLTAxMjM0NTY3ODk="},
        {"Authorization": "key-alpha-0123456789"},  # the key without its scheme
    ],
)
def test_every_resource_route_answers_401_without_a_valid_key(
    client: TestClient, headers: dict[str, str]
) -> None:
    routes = _resource_routes(client)
    assert len(routes) >= 12  # models, datasets, jobs and what hangs off them
    for method, path in routes:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"


def test_health_checks_and_the_api_description_stay_open(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_no_record_of_one_tenant_is_visible_to_the_other(
    client: TestClient, model_bytes: bytes
) -> None:
    model = _upload(client, "models", model_bytes, ALPHA).json()
    client.app.state.store.models.set_inspected(model["id"], ModelStatus.READY, {}, None)
    dataset = _upload(client, "datasets", npz_bytes(), ALPHA).json()
    body = {"model_id": model["id"], "dataset_id": dataset["id"], "thresholds": [{"fraction": 0.5}]}
    job = client.post("/v1/jobs", json=body, headers=ALPHA).json()
    assert "id" in job, job
    publish_job(client, job["id"])

    own = [
        ("GET", f"/v1/models/{model['id']}"),
        ("GET", f"/v1/datasets/{dataset['id']}"),
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/results"),
        ("GET", f"/v1/jobs/{job['id']}/stats"),
        ("GET", f"/v1/jobs/{job['id']}/artifacts"),
        ("GET", f"/v1/jobs/{job['id']}/artifacts/pruned-0.pt2"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
    ]
    for method, path in own:
        assert client.request(method, path, headers=ALPHA).status_code == 200, path
        # To beta, alpha's IDs are exactly IDs that do not exist.
        theirs = client.request(method, path, headers=BETA)
        missing = client.request(method, path.replace(_id_in(path), MISSING_ID), headers=BETA)
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]

    # Beta cannot build on alpha's uploads, nor delete anything of alpha's.
    response = client.post("/v1/jobs", json=body, headers=BETA)
    assert response.status_code == 404 and "model" in response.json()["error"]["message"]
    for path in (f"/v1/jobs/{job['id']}", f"/v1/models/{model['id']}"):
        assert client.delete(path, headers=BETA).status_code == 404
    assert client.get(f"/v1/models/{model['id']}", headers=ALPHA).status_code == 200

    assert client.get("/v1/jobs", headers=BETA).json() == {"data": [], "count": 0}
    listed = client.get("/v1/jobs", headers=ALPHA).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]] and listed["count"] == 1


def _id_in(path: str) -> str:
    return path.split("/")[3]


def test_the_same_file_uploaded_by_two_tenants_is_two_records(
    client: TestClient, model_bytes: bytes
) -> None:
    first = _upload(client, "models", model_bytes, ALPHA).json()
    second = _upload(client, "models", model_bytes, BETA).json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert client.delete(f"/v1/models/{first['id']}", headers=ALPHA).status_code == 204
    # Beta's record, and the file it shares, are untouched.
    assert client.get(f"/v1/models/{second['id']}", headers=BETA).json()["bytes"] == len(
        model_bytes
    )


def test_the_key_ring_holds_digests_only() -> None:
    ring = KeyRing({"key-alpha-0123456789": "alpha", "key-beta-9876543210": "beta"})
    assert ring.tenant_for("key-alpha-0123456789") == "alpha"
    assert ring.tenant_for("key-beta-9876543210") == "beta"
    assert ring.tenant_for("key-alpha-012345678") is None
    assert ring.tenant_for("") is None
    assert "key-alpha" not in repr(vars(ring))
    assert not KeyRing({}).enabled


def test_the_app_keeps_no_raw_key_in_its_settings(client: TestClient) -> None:
    assert client.app.state.settings.api_keys is None


def test_open_without_keys(make_client: ClientFactory) -> None:
    open_client = make_client(api_keys=None)
    assert open_client.get("/v1/jobs").status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DEADWEIGHT_DATA_DIR": str(tmp_path)}
    deadweight = str(Path(sys.executable).with_name("deadweight"))
    proc = subprocess.run(
        [deadweight, "serve", "--host", "0.0.0.0", "--no-worker"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "DEADWEIGHT_API_KEYS" in proc.stderr and "127.0.0.1" in proc.stderr
    assert not (tmp_path / "jobs").exists()  # refused before touching anything


def test_413_and_401_with_two_tenants(make_client: ClientFactory, model_bytes: bytes) -> None:
    """The size limit holds for a valid key; without one, the body is never looked at."""
    client = make_client(api_keys=KEYS, max_upload_bytes=len(model_bytes) - 1)
    assert _upload(client, "models", model_bytes, ALPHA).status_code == 413
    assert _upload(client, "models", model_bytes, {}).status_code == 401
    huge = {"Content-Length": str(10**12), "Content-Type": "multipart/form-data; boundary=x"}
    assert client.post("/v1/models", content=b"", headers={**huge, **BETA}).status_code == 413
    assert client.post("/v1/models", content=b"", headers=huge).status_code == 401


def test_open_mode_says_so_at_start(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="service.main"):
        make_client(api_keys=None)
    assert "DEADWEIGHT_API_KEYS is not set" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="service.main"):
        make_client(api_keys=KEYS)
    assert "DEADWEIGHT_API_KEYS" not in caplog.text
