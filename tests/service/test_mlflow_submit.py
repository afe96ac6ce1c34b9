"""POST /v1/jobs with `mlflow`: refused at the door unless this server names a tracking server,
names checked as MLflow stores them, and the request kept in the job's config for its worker."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.openapi_errors import ERROR_CODES
from tests.service.api_helpers import ClientFactory, new_dataset, new_model

TRACKING = "http://127.0.0.1:5000"


def _submit(client: TestClient, model_bytes: bytes, mlflow: Any) -> Any:
    ids = {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": new_dataset(client)["id"],
    }
    return client.post("/v1/jobs", json={**ids, "mlflow": mlflow})


def test_a_server_without_a_tracking_uri_refuses_mlflow_jobs(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client()
    response = _submit(client, model_bytes, {"experiment": "pruning"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "mlflow_not_configured" and "mlflow_not_configured" in ERROR_CODES
    assert "DEADWEIGHT_MLFLOW_TRACKING_URI is not set" in error["message"]
    assert client.get("/v1/jobs").json()["count"] == 0  # nothing stored


def test_the_request_is_stored_for_the_worker(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(mlflow_tracking_uri=TRACKING)
    named = _submit(client, model_bytes, {"experiment": "team/pruning", "run_name": "mlp ü 1"})
    assert named.status_code == 202, named.text
    assert named.json()["config"]["mlflow"] == {"experiment": "team/pruning", "run_name": "mlp ü 1"}
    unnamed = _submit(client, model_bytes, {"experiment": "pruning"})
    assert unnamed.json()["config"]["mlflow"] == {"experiment": "pruning", "run_name": None}
    plain = _submit(client, model_bytes, None)
    assert "mlflow" not in plain.json()["config"]


@pytest.mark.parametrize(
    ("mlflow", "field"),
    [
        ({"experiment": ""}, "mlflow.experiment"),
        ({"experiment": "x" * 257}, "mlflow.experiment"),
        ({"experiment": "two\nlines"}, "mlflow.experiment"),
        ({"experiment": " padded"}, "mlflow.experiment"),
        ({"experiment": "ok", "run_name": "r" * 251}, "mlflow.run_name"),
        ({"experiment": "ok", "run_name": "tab\there"}, "mlflow.run_name"),
        ({"experiment": "ok", "tracking_uri": "http://elsewhere"}, "mlflow.tracking_uri"),
        ({"run_name": "no experiment"}, "mlflow.experiment"),
    ],
)
def test_names_mlflow_would_not_store_as_given_are_refused(
    make_client: ClientFactory, model_bytes: bytes, mlflow: dict[str, Any], field: str
) -> None:
    client = make_client(mlflow_tracking_uri=TRACKING)
    response = _submit(client, model_bytes, mlflow)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("ftp://mlflow.internal", "must be an http(s):// URL"),
        ("http://user:secret@mlflow.internal", "must not carry credentials"),
        ("https://mlflow.internal/?token=secret", "must not have a query"),
        ("http://mlflow.internal:port", "not a valid URI"),
        ("mlflow.internal:5000", "must be an http(s):// URL"),
    ],
)
def test_the_tracking_uri_setting_is_checked_at_start(uri: str, problem: str) -> None:
    from jobs.settings import Settings

    with pytest.raises(ValueError, match="DEADWEIGHT_MLFLOW_TRACKING_URI") as raised:
        Settings(mlflow_tracking_uri=uri)
    assert problem in str(raised.value)
    for good in ("https://mlflow.example.com/prefix", "databricks", "databricks://team"):
        assert Settings(mlflow_tracking_uri=good).mlflow_tracking_uri == good
