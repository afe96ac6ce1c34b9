"""POST /v1/jobs: what is checked before a job is stored, and what is stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.states import ModelStatus
from tests.service.api_helpers import (
    CLOSED_BROKER,
    ClientFactory,
    broker_messages,
    new_dataset,
    new_model,
    npz_bytes,
)


@pytest.fixture
def ids(client: TestClient, model_bytes: bytes) -> dict[str, str]:
    return {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": new_dataset(client, npz_bytes(labels=False))["id"],
        "labelled_id": new_dataset(client, npz_bytes(labels=True))["id"],
    }


def _submit(client: TestClient, ids: dict[str, str], **fields: Any) -> Any:
    body = {"model_id": ids["model_id"], "dataset_id": ids["dataset_id"], **fields}
    return client.post("/v1/jobs", json=body)


def test_submit_stores_the_resolved_config_and_sends_the_id(
    client: TestClient, ids: dict[str, str]
) -> None:
    thresholds = [{"mean": 0.1, "std": 0.4}, {"fraction": 0.5}]
    response = _submit(
        client, ids, eval_dataset_id=ids["labelled_id"], thresholds=thresholds, compensate=True
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["progress"] == {"stage": "queued", "fraction": 0.0}
    assert (job["error"], job["started_at"], job["finished_at"]) == (None, None, None)
    assert job["created_at"].endswith("Z")
    assert job["eval_dataset_id"] == ids["labelled_id"]
    assert job["attempts"] == 0
    assert job["config"] == {
        "criterion": "seed",  # what {mean, std} thresholds are written for
        "thresholds": thresholds,
        "compensate": "mean",  # the first API's `true`
        "allocation": "global",
        "recovery": None,
        "search": False,
        "seed": 0,
        "metric": "accuracy",  # the evaluation data has labels
        "max_metric_drop": 0.005,
    }
    assert any(job["id"] in message for message in broker_messages(client))
    assert client.get(f"/v1/jobs/{job['id']}").json() == job


def test_metric_defaults_to_agreement_without_labels(
    client: TestClient, ids: dict[str, str]
) -> None:
    config = _submit(client, ids).json()["config"]
    assert config["metric"] == "agreement"
    assert config["thresholds"] is None  # the engine's default sweep


@pytest.mark.parametrize("metric", ["accuracy", "mse"])
def test_labelled_metrics_need_labels(client: TestClient, ids: dict[str, str], metric: str) -> None:
    response = _submit(client, ids, metric=metric)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_job"
    assert "has none" in error["message"] and "agreement" in error["message"]
    # Labels on the calibration data do not help: the evaluation data is what is scored.
    response = _submit(
        client,
        {**ids, "dataset_id": ids["labelled_id"]},
        metric=metric,
        eval_dataset_id=ids["dataset_id"],
    )
    assert response.status_code == 422


def test_defaults_are_reconstruction_with_linear_compensation(
    client: TestClient, ids: dict[str, str]
) -> None:
    config = _submit(client, ids).json()["config"]
    assert (config["criterion"], config["compensate"], config["allocation"]) == (
        "reconstruction",
        "linear",
        "global",
    )
    assert (config["recovery"], config["search"]) == (None, False)


def test_search_with_recovery_is_stored_with_every_recovery_setting(
    client: TestClient, ids: dict[str, str]
) -> None:
    response = _submit(
        client,
        ids,
        search=True,
        compensate="none",
        allocation="uniform",
        seed=7,
        recovery={"epochs": 2, "max_seconds": 30},
        max_metric_drop=0.01,
    )
    assert response.status_code == 202, response.text
    config = response.json()["config"]
    assert config["search"] is True and config["thresholds"] is None
    assert config["recovery"] == {"epochs": 2, "lr": 0.001, "max_seconds": 30.0, "batch_size": 32}
    assert (config["compensate"], config["allocation"], config["seed"]) == ("none", "uniform", 7)


@pytest.mark.parametrize(
    ("value", "mode"),
    [(True, "mean"), (False, "none"), (1, "mean"), ("yes", "mean"), ("off", "none")],
)
def test_the_first_apis_boolean_compensate_still_means_mean_or_none(
    client: TestClient, ids: dict[str, str], value: object, mode: str
) -> None:
    response = _submit(client, ids, compensate=value)
    assert response.status_code == 202, response.text
    assert response.json()["config"]["compensate"] == mode


def test_openapi_examples_of_a_job_validate(client: TestClient) -> None:
    from service.job_schemas import JobCreate

    schema = client.get("/openapi.json").json()["components"]["schemas"]["JobCreate"]
    assert len(schema["examples"]) >= 2  # every one is a request the API accepts
    for example in schema["examples"]:
        JobCreate.model_validate(example)  # raises if an example is not a valid request
    for name in ("compensate", "allocation", "recovery", "search", "seed"):
        assert name in schema["properties"], name


def test_variance_takes_std_alone(client: TestClient, ids: dict[str, str]) -> None:
    response = _submit(client, ids, criterion="variance", thresholds=[{"std": 0.2}])
    assert response.status_code == 202
    assert response.json()["config"]["thresholds"] == [{"std": 0.2}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"thresholds": [{"fraction": 1.0}]}, "thresholds[0].fraction"),
        ({"thresholds": [{"fraction": -0.1}]}, "thresholds[0].fraction"),
        ({"thresholds": [{"fraction": 0.2, "std": 1}]}, "thresholds[0]"),
        ({"thresholds": [{}]}, "thresholds[0]"),
        ({"thresholds": [{"mean": 0.1, "std": 0.4, "p": 1}]}, "thresholds[0]"),
        ({"criterion": "seed", "thresholds": [{"std": 0.4}]}, "thresholds"),  # needs the mean
        ({"thresholds": [{"std": 0.4}, {"mean": 0.1, "std": 0.2}]}, "thresholds"),  # seed too
        ({"criterion": "reconstruction", "thresholds": [{"std": 0.4}]}, "body"),
        ({"search": True, "thresholds": [{"fraction": 0.3}]}, "body"),
        ({"recovery": {"epochs": -1}}, "recovery.epochs"),
        ({"recovery": {"lr": 0}}, "recovery.lr"),
        ({"recovery": {"epochs": 3, "momentum": 0.9}}, "recovery.momentum"),
        ({"allocation": "random"}, "allocation"),
        ({"allocation": "auto"}, "body"),  # auto needs search
        ({"seed": -1}, "seed"),
        ({"thresholds": [{"mean": -1, "std": 0.4}]}, "thresholds[0].mean"),
        ({"thresholds": []}, "thresholds"),
        ({"criterion": "magnitude"}, "criterion"),
        ({"metric": "f1"}, "metric"),
        ({"max_metric_drop": -0.1}, "max_metric_drop"),
        ({"compensate": "maybe"}, "compensate"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_422_naming_the_field(
    client: TestClient, ids: dict[str, str], fields: dict[str, Any], field: str
) -> None:
    response = _submit(client, ids, **fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("invalid request: ")
    assert field in [d["field"] for d in error["details"]], error


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["message"]


def test_too_many_thresholds(make_client: ClientFactory, model_bytes: bytes) -> None:
    client = make_client(max_thresholds=2)
    ids = {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": new_dataset(client)["id"],
    }
    response = _submit(client, ids, thresholds=[{"fraction": f} for f in (0.1, 0.2, 0.3)])
    assert response.status_code == 422
    assert "at most 2" in response.json()["error"]["message"]


def test_unknown_records_are_404_naming_which(client: TestClient, ids: dict[str, str]) -> None:
    cases = [
        ({"model_id": "nope"}, "model 'nope'"),
        ({"dataset_id": "nope"}, "dataset 'nope'"),
        ({"eval_dataset_id": "nope"}, "evaluation dataset 'nope'"),
    ]
    for fields, named in cases:
        body = {"model_id": ids["model_id"], "dataset_id": ids["dataset_id"], **fields}
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 404
        assert named in response.json()["error"]["message"]


def test_an_invalid_model_is_refused_with_its_error(
    client: TestClient, ids: dict[str, str]
) -> None:
    models = client.app.state.store.models
    models.set_inspected(ids["model_id"], ModelStatus.INVALID, None, "op 'foo' is not allowed")
    response = _submit(client, ids)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_model"
    assert "op 'foo' is not allowed" in error["message"]


def test_an_inspected_model_checks_the_data_shape(client: TestClient, ids: dict[str, str]) -> None:
    store = client.app.state.store
    info = {"parameters": 67, "inputs": [{"shape": [None, 4]}], "layers": [], "frozen": []}
    store.models.set_inspected(ids["model_id"], ModelStatus.READY, info, None)
    assert _submit(client, ids).status_code == 202

    wrong = new_dataset(client, npz_bytes(features=5, labels=False))["id"]
    for fields in ({"dataset_id": wrong}, {"eval_dataset_id": wrong}):
        response = (
            _submit(client, {**ids, **fields})
            if "dataset_id" in fields
            else _submit(client, ids, **fields)
        )
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_dataset"
        assert wrong in error["message"] and "[4]" in error["message"]


def test_broker_down_is_503_and_leaves_no_job(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(broker_url=CLOSED_BROKER)
    store = client.app.state.store
    # Uploading a model needs the broker (inspection); put the record in directly.
    model = store.models.add("default", "0" * 64, 10, "m.pt2")
    store.models.set_inspected(model.id, ModelStatus.READY, {}, None)
    dataset_id = new_dataset(client)["id"]  # datasets need no broker
    response = client.post("/v1/jobs", json={"model_id": model.id, "dataset_id": dataset_id})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "broker_unavailable"
    assert store.jobs.list("default", 10, 0) == ([], 0)


def test_the_api_advertises_the_job_vocabulary_and_its_default_criterion_rule(
    client: TestClient,
) -> None:
    from jobs import job_config as vocabulary
    from service import job_schemas as api

    # The OpenAPI document offers exactly the values the engine runs, under the same names.
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("Criterion", "Compensation", "Allocation", "Metric"):
        assert schemas[name]["enum"] == [m.value for m in getattr(vocabulary, name)]
    forms: list[list[dict[str, float]]] = [
        [],
        [{"fraction": 0.2}],
        [{"mean": 0.1, "std": 0.2}, {"fraction": 0.3}],
        [{"std": 0.2}],
    ]
    for thresholds in forms:
        body = api.JobCreate(model_id="m", dataset_id="d", thresholds=thresholds or None)
        rule = vocabulary.criterion_for([vocabulary.ThresholdSpec(**t) for t in thresholds])
        assert body.resolved_criterion.value == rule.value


def test_a_body_of_many_bad_items_gets_a_small_answer(
    client: TestClient, ids: dict[str, str]
) -> None:
    # Half a million bad thresholds once made a 100 MB error reply (and 1 GB of API memory).
    response = _submit(client, ids, thresholds=[1] * 500_000)
    assert response.status_code == 422
    assert len(response.content) < 4096
    assert "thresholds" in response.json()["error"]["message"]
    many = _submit(client, ids, thresholds=[{"fraction": "x"}] * 4000)
    assert many.status_code == 422 and len(many.content) < 16 * 1024
    assert len(many.json()["error"]["details"]) == 20
    assert "more errors" in many.json()["error"]["message"]
