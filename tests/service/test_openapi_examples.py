"""Every request example the OpenAPI document shows is a request the API accepts.

Swagger UI puts the first example of a body in the editor when a user presses "Try it out";
without one it builds a body from the schema, filling every optional field, which the API
refuses. So every JSON body must carry examples, and each one, with its placeholder IDs
replaced by real uploads, is posted to the real app here and must be accepted.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from jobs.states import ModelStatus
from service.openapi_examples import DATASET_ID, EVAL_DATASET_ID, MODEL_ID
from tests.service.api_helpers import new_dataset, new_model, npz_bytes

# What the worker's inspection records for conftest's MLP (4 features in, 3 classes out).
INSPECTED = {"parameters": 67, "inputs": [{"shape": [None, 4]}], "layers": [], "frozen": []}


def ready_uploads(client: TestClient, model_bytes: bytes) -> dict[str, str]:
    """Real IDs for the examples' placeholders: an inspected model and two datasets."""
    model = new_model(client, model_bytes)["id"]
    # Uploading needs no worker; the inspection's outcome is recorded as a worker would.
    client.app.state.store.models.set_inspected(model, ModelStatus.READY, INSPECTED, None)
    return {
        MODEL_ID: model,
        DATASET_ID: new_dataset(client, npz_bytes(samples=32))["id"],
        EVAL_DATASET_ID: new_dataset(client, npz_bytes(samples=16))["id"],
    }


def json_bodies(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> the JSON media type of its request body."""
    return {
        (method, path): operation["requestBody"]["content"]["application/json"]
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }


def test_every_json_body_documents_examples_the_api_accepts(
    client: TestClient, model_bytes: bytes
) -> None:
    spec = client.get("/openapi.json").json()
    bodies = json_bodies(spec)
    assert ("post", "/v1/jobs") in bodies
    ids = ready_uploads(client, model_bytes)
    for (method, path), media in bodies.items():
        examples = media.get("examples", {})
        assert examples, f"{method} {path} shows no example: Swagger UI would invent one"
        for name, example in examples.items():
            text = json.dumps(example["value"])
            for placeholder, real in ids.items():
                text = text.replace(placeholder, real)
            response = client.request(method, path, json=json.loads(text))
            assert response.status_code < 300, (method, path, name, response.text)


def test_the_schema_level_examples_are_the_same_bodies(client: TestClient) -> None:
    """ReDoc and code generators read the schema's `examples`: no second, stale set."""
    spec = client.get("/openapi.json").json()
    media = json_bodies(spec)[("post", "/v1/jobs")]
    schema = spec["components"]["schemas"]["JobCreate"]
    assert schema["examples"] == [e["value"] for e in media["examples"].values()]


def test_the_example_ids_are_unknown_until_replaced(client: TestClient) -> None:
    """Posted as shown, an example names uploads that do not exist: 404, not 422."""
    spec = client.get("/openapi.json").json()
    for example in json_bodies(spec)[("post", "/v1/jobs")]["examples"].values():
        response = client.post("/v1/jobs", json=example["value"])
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
