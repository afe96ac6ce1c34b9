"""POST /v1/jobs with `formats`: onnx is stored beside pt2, and the .pt2 cannot be left out."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.service.api_helpers import new_dataset, new_model, npz_bytes


def _submit(client: TestClient, model_bytes: bytes, formats: list[str]) -> Any:
    body = {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": new_dataset(client, npz_bytes(labels=False))["id"],
        "formats": formats,
    }
    return client.post("/v1/jobs", json=body)


def test_formats_with_onnx_are_stored_and_pt2_is_required(
    client: TestClient, model_bytes: bytes
) -> None:
    response = _submit(client, model_bytes, ["onnx", "pt2"])
    assert response.status_code == 202, response.text
    assert response.json()["config"]["formats"] == ["pt2", "onnx"]
    refused = _submit(client, model_bytes, ["onnx"])
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert [d["field"] for d in error["details"]] == ["formats"]
    assert 'must include "pt2"' in error["message"]
