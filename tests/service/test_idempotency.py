"""The Idempotency-Key header: a retried submission or upload creates nothing twice, on SQLite
and PostgreSQL; a key reused for another request, one in flight, or malformed, is refused."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from jobs.states import ModelStatus
from jobs.tables import IdempotencyKeyRow, utcnow
from service.auth import OPEN_TENANT
from tests.jobs.conftest import postgres_url, sqlite_url  # noqa: F401 (fixtures)
from tests.service.api_helpers import (
    ClientFactory,
    blob_files,
    broker_messages,
    new_dataset,
    new_model,
    npz_bytes,
    upload,
)

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
CSV = b"a,b,target\n0.5,1.0,0\n1.5,-2.0,1\n"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, make_client: ClientFactory) -> TestClient:
    """The API on each job store backend."""
    if request.param == "sqlite":
        return make_client()
    url = request.getfixturevalue("postgres_url")
    return make_client(database_url=url)


def _ready_model(client: TestClient, model_bytes: bytes) -> str:
    model_id: str = new_model(client, model_bytes)["id"]
    info = {"inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}], "layers": []}
    client.app.state.store.models.set_inspected(model_id, ModelStatus.READY, info, None)
    return model_id


def _body(client: TestClient, model_bytes: bytes) -> dict[str, Any]:
    return {
        "model_id": _ready_model(client, model_bytes),
        "dataset_id": new_dataset(client, npz_bytes(labels=False))["id"],
    }


def _submit(client: TestClient, body: dict[str, Any], key: str | None) -> Any:
    return client.post("/v1/jobs", json=body, headers={} if key is None else {KEY: key})


def test_a_retried_submission_creates_one_job(app: TestClient, model_bytes: bytes) -> None:
    body = _body(app, model_bytes)
    first = _submit(app, body, "run-42")
    assert first.status_code == 202, first.text
    assert REPLAYED not in first.headers
    again = _submit(app, {**body, "compensate": "linear"}, "run-42")  # the default, spelled out
    assert again.status_code == 202, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert app.get("/v1/jobs").json()["count"] == 1
    assert sum(first.json()["id"] in m for m in broker_messages(app)) == 1, "sent once"
    # Another key is another job.
    assert _submit(app, body, "run-43").json()["id"] != first.json()["id"]


def test_a_key_reused_for_another_body_is_422(app: TestClient, model_bytes: bytes) -> None:
    body = _body(app, model_bytes)
    assert _submit(app, body, "run-1").status_code == 202
    response = _submit(app, {**body, "seed": 7}, "run-1")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "run-1" in error["message"] and "new key" in error["message"]
    assert app.get("/v1/jobs").json()["count"] == 1


def test_a_refused_request_releases_its_key(app: TestClient, model_bytes: bytes) -> None:
    body = _body(app, model_bytes)
    wrong = _submit(app, {**body, "model_id": "0" * 32}, "run-2")
    assert wrong.status_code == 404
    fixed = _submit(app, body, "run-2")
    assert fixed.status_code == 202 and REPLAYED not in fixed.headers


def test_a_request_in_flight_is_409_with_retry_after(app: TestClient, model_bytes: bytes) -> None:
    body = _body(app, model_bytes)
    # The first request, still being served: its claim, as `begin` makes it.
    app.app.state.store.idempotency.claim(OPEN_TENANT, "run-3", None, 3600, 3600)
    response = _submit(app, body, "run-3")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert int(response.headers["Retry-After"]) >= 1
    assert upload(app, "models", model_bytes, "m.pt2").status_code == 201  # no key
    held = app.post("/v1/models", files={"file": ("m.pt2", model_bytes)}, headers={KEY: "run-3"})
    assert held.status_code == 409 and held.headers["Retry-After"]


def test_keys_expire(make_client: ClientFactory, model_bytes: bytes) -> None:
    client = make_client(idempotency_ttl_seconds=60)
    body = _body(client, model_bytes)
    first = _submit(client, body, "run-4").json()["id"]
    with client.app.state.store.database.session() as session:
        session.execute(
            update(IdempotencyKeyRow).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    second = _submit(client, body, "run-4")
    assert second.status_code == 202 and REPLAYED not in second.headers
    assert second.json()["id"] != first


@pytest.mark.parametrize("key", ["", "x" * 256, "two words", "clé"])
def test_malformed_keys_are_422(client: TestClient, model_bytes: bytes, key: str) -> None:
    body = _body(client, model_bytes)
    response = client.post("/v1/jobs", json=body, headers={KEY: key.encode()})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_idempotency_key"
    assert "255" in error["message"]


def test_keys_are_per_tenant(make_client: ClientFactory, model_bytes: bytes) -> None:
    client = make_client(api_keys="a=key-a,b=key-b")
    ids = []
    for bearer in ("key-a", "key-b"):
        client.headers["Authorization"] = f"Bearer {bearer}"
        response = client.post(
            "/v1/models", files={"file": ("m.pt2", model_bytes)}, headers={KEY: "same"}
        )
        assert response.status_code == 201 and REPLAYED not in response.headers
        ids.append(response.json()["id"])
    assert ids[0] != ids[1]


def test_a_retried_model_upload_is_the_first_one(app: TestClient, model_bytes: bytes) -> None:
    send = lambda data: app.post(  # noqa: E731
        "/v1/models", files={"file": ("m.pt2", data)}, headers={KEY: "upload-1"}
    )
    first = send(model_bytes)
    assert first.status_code == 201, first.text
    again = send(model_bytes)
    assert (again.status_code, again.headers[REPLAYED]) == (201, "true")
    assert again.json() == first.json()
    assert app.get("/v1/models").json()["count"] == 1
    other = send(model_bytes + b"\0")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(blob_files(app)) == 1, "the refused retry's file is dropped"


def test_a_retried_dataset_upload_compares_file_and_fields(client: TestClient) -> None:
    def send(**fields: str) -> Any:
        return client.post(
            "/v1/datasets", files={"file": ("t.csv", CSV)}, data=fields, headers={KEY: "ds-1"}
        )

    first = send(label_column="target")
    assert first.status_code == 201, first.text
    assert send(label_column="target").headers[REPLAYED] == "true"
    changed = send(no_labels="true")
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert client.get("/v1/datasets").json()["count"] == 1


def test_a_key_of_another_endpoint_is_refused(client: TestClient, model_bytes: bytes) -> None:
    body = _body(client, model_bytes)
    assert _submit(client, body, "shared").status_code == 202
    response = client.post(
        "/v1/models", files={"file": ("m.pt2", model_bytes)}, headers={KEY: "shared"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_deleted_resource_is_404(client: TestClient, model_bytes: bytes) -> None:
    send = lambda: client.post(  # noqa: E731
        "/v1/models", files={"file": ("m.pt2", model_bytes)}, headers={KEY: "gone-1"}
    )
    model_id = send().json()["id"]
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    response = send()
    assert response.status_code == 404
    assert model_id in response.json()["error"]["message"]


def test_racing_identical_submissions_create_one_job(app: TestClient, model_bytes: bytes) -> None:
    body = _body(app, model_bytes)
    start = threading.Barrier(6)
    answers: list[Any] = []

    def submit() -> None:
        start.wait()
        answers.append(_submit(app, body, "race-1"))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(a.status_code for a in answers)
    assert len(statuses) == 6 and set(statuses) <= {202, 409}, statuses
    created = [a for a in answers if a.status_code == 202 and REPLAYED not in a.headers]
    assert len(created) == 1
    assert {a.json()["id"] for a in answers if a.status_code == 202} == {created[0].json()["id"]}
    assert app.get("/v1/jobs").json()["count"] == 1


def test_a_broken_upload_releases_its_key(client: TestClient, model_bytes: bytes) -> None:
    boundary = "b"
    cut = (
        (  # no closing boundary: the client went away mid-file
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.pt2"\r\n\r\n'
        ).encode()
        + model_bytes[:100]
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", KEY: "up-2"}
    assert client.post("/v1/models", content=cut, headers=headers).status_code == 400
    retry = client.post("/v1/models", files={"file": ("m.pt2", model_bytes)}, headers={KEY: "up-2"})
    assert retry.status_code == 201 and REPLAYED not in retry.headers
