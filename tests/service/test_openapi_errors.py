"""The OpenAPI document tells the truth about errors: one envelope on every error response,
examples whose codes are the ones the service sends with that status, and real errors that
match what their operation documents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from jobs.states import ModelStatus
from service.openapi_errors import ERROR_CODES, ErrorPublic
from service.schemas import NotReadyPublic
from tests.service.api_helpers import CLOSED_BROKER, ClientFactory, new_dataset, new_model
from tests.service.test_openapi_examples import INSPECTED

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE = {"$ref": "#/components/schemas/ErrorPublic"}
# How the service spells a code: an error's `code=`/`default_code`, an `error_body("...")`,
# or a (code, message, retry) tuple in the error handlers.
_SPELLINGS = (
    r'\bcode="([a-z_]+)"',
    r'default_code = "([a-z_]+)"',
    r'error_body\(\s*"([a-z_]+)"',
    r'code, \w+, \w+ = "([a-z_]+)"',
    r'code, \w+ = "([a-z_]+)"',
)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_response_is_the_envelope_with_an_example_per_code(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(spec)
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            where = f"{method} {path} {status}"
            media = response["content"]["application/json"]
            if (path, status) == ("/readyz", "503"):  # the probe's fields and the envelope
                assert media["schema"] == {"$ref": "#/components/schemas/NotReadyPublic"}
                continue
            assert media["schema"] == ENVELOPE, where
            assert media["examples"], where
            for code, example in media["examples"].items():
                assert ERROR_CODES[code].status == int(status), where
                assert ErrorPublic.model_validate(example["value"]).error.code == code, where
                assert code in response["description"], where


def test_operations_document_the_errors_they_share(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for method, path, operation in _operations(spec):
        statuses = set(operation["responses"])
        assert "500" in statuses, (method, path)
        if path.startswith("/v1/"):
            assert {"401", "503"} <= statuses, (method, path)
            assert "store_unavailable" in operation["responses"]["503"]["description"]
    codes = spec["paths"]["/v1/jobs/{job_id}/results"]["get"]["responses"]["409"]
    assert set(codes["content"]["application/json"]["examples"]) == {"not_ready"}
    validation = spec["paths"]["/v1/jobs"]["get"]["responses"]["422"]
    assert "invalid_request" in validation["content"]["application/json"]["examples"]


def test_every_code_the_service_spells_is_documented() -> None:
    spelled = set()
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path.name.startswith("openapi"):
            continue
        text = path.read_text()
        for pattern in _SPELLINGS:
            spelled.update(re.findall(pattern, text))
    assert {"not_found", "store_unavailable", "validation_busy", "bad_range"} <= spelled
    assert sorted(spelled - set(ERROR_CODES)) == []


def _documented(spec: dict[str, Any], method: str, path: str, response: Response) -> None:
    """`response` is an error its operation documents, in the documented envelope."""
    documented = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, (method, path, status, sorted(documented))
    body = ErrorPublic.model_validate(response.json())
    examples = documented[status]["content"]["application/json"]["examples"]
    assert body.error.code in examples, (method, path, body.error.code, sorted(examples))


def test_real_errors_are_the_documented_ones(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(api_keys="t=key-0123456789abcdef")
    spec = client.get("/openapi.json").json()
    _documented(spec, "get", "/v1/jobs/{job_id}", client.get("/v1/jobs/nope"))
    client.headers["Authorization"] = "Bearer key-0123456789abcdef"
    _documented(spec, "get", "/v1/jobs/{job_id}", client.get("/v1/jobs/nope"))
    _documented(spec, "get", "/v1/jobs", client.get("/v1/jobs", params={"limit": 0}))
    bad = {"model_id": "m", "dataset_id": "d", "thresholds": [{"fraction": 2}]}
    _documented(spec, "post", "/v1/jobs", client.post("/v1/jobs", json=bad))
    _documented(spec, "post", "/v1/jobs", client.post("/v1/jobs", content=b"{" * 2_000_000))
    model, dataset = new_model(client, model_bytes), new_dataset(client)
    client.app.state.store.models.set_inspected(model["id"], ModelStatus.READY, INSPECTED, None)
    body = {"model_id": model["id"], "dataset_id": dataset["id"], "metric": "mse"}
    _documented(spec, "post", "/v1/jobs", client.post("/v1/jobs", json={**body, "seed": -1}))
    job = client.post("/v1/jobs", json={"model_id": model["id"], "dataset_id": dataset["id"]})
    assert job.status_code == 202, job.text
    job_path = f"/v1/jobs/{job.json()['id']}"
    for route in ("results", "stats"):
        response = client.get(f"{job_path}/{route}")
        _documented(spec, "get", f"/v1/jobs/{{job_id}}/{route}", response)
    _documented(spec, "delete", "/v1/jobs/{job_id}", client.delete(job_path))
    model_path = f"/v1/models/{model['id']}"
    _documented(spec, "delete", "/v1/models/{model_id}", client.delete(model_path))
    refused = client.post("/v1/datasets", files={"file": ("d.npz", b"not a zip")})
    _documented(spec, "post", "/v1/datasets", refused)
    form = client.post("/v1/models", files={"other": ("m.pt2", b"x")})
    _documented(spec, "post", "/v1/models", form)


def test_readiness_failure_is_its_documented_body(make_client: ClientFactory) -> None:
    client = make_client(broker_url=CLOSED_BROKER)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert NotReadyPublic.model_validate(response.json()).error.code == "not_ready"
