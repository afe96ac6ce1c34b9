"""Mistakes refused when the request arrives, not when the job fails far from its cause: a job
on a model not yet inspected, a CSV whose labels would become a feature, thresholds of no
known form; and the messages name the upload by ID and file name."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.states import ModelStatus
from tests.service.api_helpers import blob_files, new_dataset, new_model, npz_bytes, upload

INPUTS = [{"name": "x", "shape": [None, 4], "dtype": "float32"}]


def _job(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/jobs", json=body)


def test_a_job_on_a_model_being_inspected_is_409_until_it_is_ready(
    client: TestClient, model_bytes: bytes
) -> None:
    model_id = new_model(client, model_bytes, ready=False)["id"]
    dataset_id = new_dataset(client)["id"]
    early = _job(client, model_id=model_id, dataset_id=dataset_id)
    assert early.status_code == 409
    assert int(early.headers["Retry-After"]) > 0
    error = early.json()["error"]
    assert error["code"] == "model_not_ready"
    assert model_id in error["message"] and "(mlp.pt2)" in error["message"]
    assert "ready" in error["message"] and f"/v1/models/{model_id}" in error["message"]
    assert client.get("/v1/jobs").json()["count"] == 0, "nothing queued"

    store = client.app.state.store
    store.models.set_inspected(model_id, ModelStatus.READY, {"inputs": INPUTS}, None)
    assert _job(client, model_id=model_id, dataset_id=dataset_id).status_code == 202


def test_the_409_is_documented(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    assert "model_not_ready" in operation["description"]
    assert "409" in operation["responses"]


@pytest.mark.parametrize("column", ["label", "Y", "Target", " class "])
def test_a_csv_with_a_label_like_column_needs_label_column_or_no_labels(
    client: TestClient, column: str
) -> None:
    csv = f"a,{column},b\n1,0,2\n3,1,4\n".encode()
    refused = upload(client, "datasets", csv, "table.csv")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "label_column_required"
    name = column.strip()
    assert f"label_column={name!r}" in error["message"] and "no_labels=true" in error["message"]
    assert "table.csv" in error["message"]
    assert blob_files(client) == [], "the refused file is not kept"

    features = upload(client, "datasets", csv, "table.csv", no_labels="true").json()
    assert (features["x_shape"], features["has_labels"]) == ([3], False)
    labelled = upload(client, "datasets", csv, "table.csv", label_column=name).json()
    assert (labelled["x_shape"], labelled["has_labels"]) == ([2], True)


def test_other_csvs_and_formats_need_neither(client: TestClient) -> None:
    plain = new_dataset(client, b"a,b,labelled\n1,2,3\n", "plain.csv")
    assert (plain["x_shape"], plain["has_labels"]) == ([3], False)
    # The check reads CSV headers only: an .npz's `y` is its labels already.
    assert new_dataset(client, npz_bytes(labels=False))["has_labels"] is False
    npz = upload(client, "datasets", npz_bytes(), "d.npz", no_labels="true")
    assert npz.status_code == 422 and "CSV files only" in npz.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"no_labels": "true", "label_column": "label"}, "not both"),
        ({"no_labels": "maybe"}, "true or false"),
    ],
)
def test_no_labels_is_a_boolean_and_excludes_label_column(
    client: TestClient, fields: dict[str, str], reason: str
) -> None:
    response = upload(client, "datasets", b"a,label\n1,0\n", "t.csv", **fields)
    assert response.status_code == 422
    assert reason in response.json()["error"]["message"]
    assert blob_files(client) == []


@pytest.mark.parametrize("threshold", [{"frac": 0.3}, 0.3, "f0.3", {}, {"fraction": 0.2, "std": 1}])
def test_threshold_errors_list_the_accepted_forms(
    client: TestClient, model_bytes: bytes, threshold: Any
) -> None:
    body = {"model_id": new_model(client, model_bytes)["id"], "dataset_id": "d"}
    response = _job(client, **body, thresholds=[threshold])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    for form in ('{"fraction": f}', '{"mean": m, "std": s}', '{"std": s}'):
        assert form in error["message"], error["message"]
    assert error["details"][0]["field"] == "thresholds[0]"


def test_messages_name_uploads_by_id_and_file_name(client: TestClient, model_bytes: bytes) -> None:
    store = client.app.state.store
    model_id = new_model(client, model_bytes)["id"]
    wide = [{"name": "x", "shape": [None, 5], "dtype": "float32"}]
    store.models.set_inspected(model_id, ModelStatus.READY, {"inputs": wide}, None)
    dataset_id = new_dataset(client, npz_bytes(features=4), "four.npz")["id"]
    misfit = _job(client, model_id=model_id, dataset_id=dataset_id).json()["error"]
    assert misfit["code"] == "invalid_dataset"
    for name in (f"dataset {dataset_id!r} (four.npz)", f"model {model_id!r} (mlp.pt2)"):
        assert name in misfit["message"], misfit["message"]

    store.models.set_inspected(model_id, ModelStatus.INVALID, None, "op 'foo' is not allowed")
    refused = _job(client, model_id=model_id, dataset_id=dataset_id).json()["error"]
    assert f"model {model_id!r} (mlp.pt2) cannot be pruned" in refused["message"]

    not_an_archive = upload(client, "models", b"not a zip", "broken.pt2").json()["error"]
    assert not_an_archive["message"].startswith("broken.pt2: ")
