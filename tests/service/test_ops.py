"""Probes, OpenAPI, the error envelope, and the import boundary of the HTTP process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from fastapi.testclient import TestClient

from tests.service.api_helpers import CLOSED_BROKER, ClientFactory


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_with_embedded_defaults(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = {"database": "ok", "broker": "ok", "disk": "ok"}
    assert response.json() == {"status": "ready", "checks": checks}


def test_readyz_reports_an_unreachable_broker(make_client: ClientFactory) -> None:
    client = make_client(broker_url=CLOSED_BROKER)
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 10  # a probe must answer, not hang
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("error: ")
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["message"].startswith("broker: error")


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Deadweight"
    paths = spec["paths"]
    for path in (
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/results",
        "/v1/jobs/{job_id}/stats",
        "/v1/jobs/{job_id}/artifacts",
        "/v1/jobs/{job_id}/artifacts/{name}",
        "/v1/jobs/{job_id}/cancel",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    # The upload body is read by hand; the spec still shows the form to /docs users.
    form = paths["/v1/models"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["required"] == ["file"]
    assert client.get("/docs").status_code == 200


def test_unknown_route_and_method_use_the_error_envelope(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = client.put("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unexpected_errors_are_500_without_a_traceback(make_client: ClientFactory) -> None:
    client = make_client(raise_server_exceptions=False)

    def boom() -> None:
        raise RuntimeError("secret internals at /srv/deadweight")

    client.app.add_api_route("/boom", boom)
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": response.json()["error"]["message"]}
    }
    assert "secret" not in response.text and "Traceback" not in response.text


def test_the_http_process_never_imports_torch_or_the_engine() -> None:
    code = (
        "import json, sys\n"
        "import service.main\n"
        "service.main.create_app()\n"
        "import service.routes, service.uploads, service.schemas, service.deps\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "bad = sorted(roots & {'torch', 'pruning', 'worker'})\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
