"""Per-tenant limits on storage and work in flight: quotas (507), uploads, inspections and
jobs in flight (429); each tenant's limit is its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.service.api_helpers import ClientFactory, blob_files, new_model, npz_bytes, upload
from tests.service.upload_gates import KEYS, as_tenant, in_thread, open_gates, upload_as


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from open_gates(monkeypatch)


def test_storage_quota_refuses_with_507_per_tenant_and_deleting_frees_it(
    make_client: ClientFactory,
) -> None:
    data = npz_bytes(samples=64)
    client = make_client(api_keys=KEYS, tenant_storage_bytes=int(len(data) * 1.5))
    first = upload_as(client, "key-alpha", "datasets", data, "a.npz")
    assert first.status_code == 201
    again = upload_as(client, "key-alpha", "datasets", npz_bytes(samples=65), "b.npz")
    assert again.status_code == 507, again.text
    assert again.json()["error"]["code"] == "quota_exceeded"
    assert "DEADWEIGHT_TENANT_STORAGE_BYTES" in again.json()["error"]["message"]
    assert len(blob_files(client)) == 1, "nothing of the refused upload stays"
    # Another tenant has a quota of its own.
    assert upload_as(client, "key-beta", "datasets", data, "a.npz").status_code == 201
    client.delete(f"/v1/datasets/{first.json()['id']}", headers=as_tenant(client, "key-alpha"))
    assert upload_as(client, "key-alpha", "datasets", data, "c.npz").status_code == 201


def test_published_job_files_count_against_the_quota(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    from tests.service.api_helpers import publish_job

    client = make_client(tenant_storage_bytes=len(model_bytes) + 3 * len(npz_bytes()))
    model = new_model(client, model_bytes)["id"]
    dataset = upload(client, "datasets", npz_bytes(), "d.npz").json()["id"]
    job = client.post("/v1/jobs", json={"model_id": model, "dataset_id": dataset}).json()["id"]
    folder = publish_job(client, job)
    (folder / "pruned-1.pt2").write_bytes(b"\0" * 4 * len(npz_bytes()))
    over = client.post("/v1/jobs", json={"model_id": model, "dataset_id": dataset})
    assert over.status_code == 507, over.text
    assert client.delete(f"/v1/jobs/{job}").status_code == 204
    assert (
        client.post("/v1/jobs", json={"model_id": model, "dataset_id": dataset}).status_code == 202
    )


def test_uploads_in_flight_are_limited_per_tenant(make_client: ClientFactory, gate: Any) -> None:
    client = make_client(api_keys=KEYS, tenant_uploads_in_flight=1)
    alpha = gate("slow.npz")
    thread, result = in_thread(
        lambda: upload_as(client, "key-alpha", "datasets", npz_bytes(), "slow.npz")
    )
    assert alpha.entered.wait(10)
    busy = upload_as(client, "key-alpha", "datasets", npz_bytes(samples=3), "next.npz")
    assert busy.status_code == 429, busy.text
    assert busy.headers["Retry-After"]
    assert "DEADWEIGHT_TENANT_UPLOADS_IN_FLIGHT" in busy.json()["error"]["message"]
    other = upload_as(client, "key-beta", "datasets", npz_bytes(samples=3), "next.npz")
    assert other.status_code == 201, "another tenant is not held up"
    alpha.release.set()
    thread.join(10)
    assert result[0].status_code == 201
    assert (
        upload_as(client, "key-alpha", "datasets", npz_bytes(samples=3), "n.npz").status_code == 201
    )


def test_models_waiting_for_inspection_are_limited_per_tenant(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(api_keys=KEYS, tenant_pending_inspections=2)
    for _ in range(2):
        assert upload_as(client, "key-alpha", "models", model_bytes, "m.pt2").status_code == 201
    third = upload_as(client, "key-alpha", "models", model_bytes, "m.pt2")
    assert third.status_code == 429, third.text
    assert third.headers["Retry-After"]
    assert upload_as(client, "key-beta", "models", model_bytes, "m.pt2").status_code == 201


def test_jobs_in_flight_are_limited_per_tenant(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(tenant_jobs_in_flight=2)
    body = {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": upload(client, "datasets", npz_bytes(), "d.npz").json()["id"],
    }
    first = client.post("/v1/jobs", json=body).json()["id"]
    assert client.post("/v1/jobs", json=body).status_code == 202
    refused = client.post("/v1/jobs", json=body)
    assert refused.status_code == 429, refused.text
    assert "DEADWEIGHT_TENANT_JOBS_IN_FLIGHT" in refused.json()["error"]["message"]
    client.post(f"/v1/jobs/{first}/cancel")
    assert client.post("/v1/jobs", json=body).status_code == 202
