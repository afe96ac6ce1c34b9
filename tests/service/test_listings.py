"""GET /v1/models, /v1/datasets and /v1/jobs: the caller's records, newest first, a page at a
time, filtered; a filter value the API does not know is a 422 naming those it accepts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.states import JobStatus, ModelStatus
from tests.service.api_helpers import ClientFactory, new_dataset, new_model, npz_bytes

INFO = {"inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}], "layers": []}


def _ready(client: TestClient, model_id: str) -> None:
    client.app.state.store.models.set_inspected(model_id, ModelStatus.READY, INFO, None)


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def test_models_are_listed_newest_first_in_pages(client: TestClient, model_bytes: bytes) -> None:
    made = [new_model(client, model_bytes)["id"] for _ in range(3)]
    assert client.get("/v1/models").json()["count"] == 3
    assert _ids(client.get("/v1/models")) == made[::-1]
    assert _ids(client.get("/v1/models?limit=2")) == made[:0:-1]
    page = client.get("/v1/models?limit=2&offset=2").json()
    assert ([m["id"] for m in page["data"]], page["count"]) == ([made[0]], 3)
    listed = client.get("/v1/models").json()["data"][0]
    assert listed == client.get(f"/v1/models/{made[-1]}").json()


def test_models_filter_by_status(client: TestClient, model_bytes: bytes) -> None:
    pending, ready = (new_model(client, model_bytes, ready=False)["id"] for _ in range(2))
    _ready(client, ready)
    assert _ids(client.get("/v1/models?status=ready")) == [ready]
    assert _ids(client.get("/v1/models?status=pending")) == [pending]
    assert sorted(_ids(client.get("/v1/models?status=pending,ready"))) == sorted([pending, ready])
    assert client.get("/v1/models?status=invalid").json() == {"data": [], "count": 0}


def test_datasets_are_listed_newest_first_in_pages(client: TestClient) -> None:
    made = [new_dataset(client, npz_bytes(samples=8 + i))["id"] for i in range(3)]
    assert _ids(client.get("/v1/datasets")) == made[::-1]
    page = client.get("/v1/datasets?limit=1&offset=1").json()
    assert ([d["id"] for d in page["data"]], page["count"]) == ([made[1]], 3)


@pytest.mark.parametrize("kind", ["models", "datasets", "jobs"])
def test_listings_take_the_same_page_parameters(client: TestClient, kind: str) -> None:
    for query in ("limit=0", "limit=201", "offset=-1"):
        response = client.get(f"/v1/{kind}?{query}")
        assert response.status_code == 422, (kind, query)
        assert response.json()["error"]["code"] == "invalid_request"


def test_listings_are_per_tenant(make_client: ClientFactory, model_bytes: bytes) -> None:
    client = make_client(api_keys="a=key-a,b=key-b")
    client.headers["Authorization"] = "Bearer key-a"
    new_model(client, model_bytes)
    new_dataset(client)
    client.headers["Authorization"] = "Bearer key-b"
    for kind in ("models", "datasets", "jobs"):
        assert client.get(f"/v1/{kind}").json() == {"data": [], "count": 0}


@pytest.fixture
def jobs(client: TestClient, model_bytes: bytes) -> dict[str, str]:
    """Three jobs: on model m1 with data d1 (queued, and failed), on m2 with d2 (evaluated
    on d1)."""
    m1, m2 = (new_model(client, model_bytes)["id"] for _ in range(2))
    d1, d2 = (new_dataset(client, npz_bytes(samples=8 + i))["id"] for i in range(2))

    def submit(**body: str) -> str:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    ids = {"m1": m1, "m2": m2, "d1": d1, "d2": d2}
    ids["failed"] = submit(model_id=m1, dataset_id=d1)
    store = client.app.state.store
    assert store.lifecycle.start(ids["failed"]) is not None
    assert store.lifecycle.finish(ids["failed"], JobStatus.FAILED, error="broken")
    ids["queued"] = submit(model_id=m1, dataset_id=d1)
    ids["other"] = submit(model_id=m2, dataset_id=d2, eval_dataset_id=d1)
    return ids


def test_jobs_filter_by_status_model_and_dataset(client: TestClient, jobs: dict[str, str]) -> None:
    def listed(query: str) -> list[str]:
        return _ids(client.get(f"/v1/jobs?{query}"))

    assert listed("status=failed") == [jobs["failed"]]
    assert listed("status=queued") == [jobs["other"], jobs["queued"]]
    assert listed("status=queued&status=failed") == [jobs["other"], jobs["queued"], jobs["failed"]]
    assert listed("status=succeeded") == []
    assert client.get("/v1/jobs?status=failed").json()["count"] == 1
    assert listed(f"model_id={jobs['m1']}") == [jobs["queued"], jobs["failed"]]
    # Calibration or evaluation data.
    assert listed(f"dataset_id={jobs['d1']}") == [jobs["other"], jobs["queued"], jobs["failed"]]
    assert listed(f"dataset_id={jobs['d2']}") == [jobs["other"]]
    assert listed(f"model_id={jobs['m1']}&status=queued") == [jobs["queued"]]
    assert listed("model_id=" + "0" * 32) == []


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        ("/v1/jobs?status=done", "queued, running, succeeded, failed, cancelled"),
        ("/v1/jobs?status=queued,done", "queued, running, succeeded, failed, cancelled"),
        ("/v1/models?status=inspected", "pending, ready, invalid"),
    ],
)
def test_an_unknown_filter_value_is_422_naming_the_accepted_ones(
    client: TestClient, path: str, accepted: str
) -> None:
    response = client.get(path)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_filter"
    assert "'done'" in error["message"] or "'inspected'" in error["message"]
    assert accepted in error["message"]
