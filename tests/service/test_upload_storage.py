"""Uploads and storage under pressure: shared blobs, leftovers, quotas, per-tenant limits,
a disk with no room left. Each test failed on the first release's upload path."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import service.routes.datasets as dataset_routes
from jobs.blobs import BlobStore
from jobs.settings import Settings
from jobs.store import JobStore
from tests.service.api_helpers import ClientFactory, blob_files, new_model, npz_bytes, upload

KEYS = "alpha=key-alpha,beta=key-beta"


def _as(client: TestClient, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload_as(
    client: TestClient, key: str, kind: str, data: bytes, name: str, **fields: str
) -> Any:
    return client.post(
        f"/v1/{kind}",
        files={"file": (name, data, "application/octet-stream")},
        data=fields,
        headers=_as(client, key),
    )


class _Gate:
    """Holds the validation of one file name until released: an upload "still validating"."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, filename: str) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = dataset_routes.validate_upload

        async def gated(kind: str, path: Path, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == filename:
                self.entered.set()
                while not self.release.is_set():  # the event loop keeps serving meanwhile
                    await _sleep(0.02)
            return await real(kind, path, name, *args, **kwargs)

        monkeypatch.setattr(dataset_routes, "validate_upload", gated)


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def keyed(make_client: ClientFactory) -> TestClient:
    return make_client(api_keys=KEYS)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`gate(filename)` holds that file's validation; every gate opens at teardown (before
    the clients stop), so a failing test cannot leave a request hanging."""
    made: list[_Gate] = []

    def make(filename: str) -> _Gate:
        made.append(_Gate(monkeypatch, filename))
        return made[-1]

    yield make
    for each in made:
        each.release.set()


def _holds(client: TestClient) -> list[str]:
    store: JobStore = client.app.state.store
    return store.stale_holds(-3600)  # every hold, whatever its age


# -- shared blobs ---------------------------------------------------------------------------
def test_another_tenants_refusal_of_the_same_bytes_keeps_a_validating_upload(
    keyed: TestClient, gate: Any
) -> None:
    data = npz_bytes()
    alpha = gate("alpha.npz")
    thread, result = _in_thread(
        lambda: _upload_as(keyed, "key-alpha", "datasets", data, "alpha.npz")
    )
    assert alpha.entered.wait(10)
    # Beta sends the same bytes, refused (label_column is for CSV only): its blob is alpha's.
    refused = _upload_as(keyed, "key-beta", "datasets", data, "beta.npz", label_column="y")
    assert refused.status_code == 422
    assert len(blob_files(keyed)) == 1, "the refusal removed the blob alpha is validating"
    alpha.release.set()
    thread.join(10)
    assert result[0].status_code == 201, result[0].text
    assert len(blob_files(keyed)) == 1
    assert _holds(keyed) == []


def test_another_tenants_delete_of_the_same_bytes_keeps_a_validating_upload(
    keyed: TestClient, gate: Any
) -> None:
    data = npz_bytes()
    theirs = _upload_as(keyed, "key-beta", "datasets", data, "beta.npz")
    assert theirs.status_code == 201
    alpha = gate("alpha.npz")
    thread, result = _in_thread(
        lambda: _upload_as(keyed, "key-alpha", "datasets", data, "alpha.npz")
    )
    assert alpha.entered.wait(10)
    gone = keyed.delete(f"/v1/datasets/{theirs.json()['id']}", headers=_as(keyed, "key-beta"))
    assert gone.status_code == 204
    assert len(blob_files(keyed)) == 1, "the delete removed the blob alpha is validating"
    alpha.release.set()
    thread.join(10)
    assert result[0].status_code == 201, result[0].text
    # The last reference gone, the blob goes too.
    mine = result[0].json()["id"]
    assert keyed.delete(f"/v1/datasets/{mine}", headers=_as(keyed, "key-alpha")).status_code == 204
    assert blob_files(keyed) == []


# -- leftovers ------------------------------------------------------------------------------
def test_an_unexpected_error_in_validation_leaves_no_file_and_no_hold(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(raise_server_exceptions=False)

    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug in a reader")

    monkeypatch.setattr(dataset_routes, "validate_upload", broken)
    response = upload(client, "datasets", npz_bytes(), "d.npz")
    assert response.status_code == 500
    assert "a bug in a reader" not in response.text
    assert blob_files(client) == []
    assert _holds(client) == []
    blobs: BlobStore = client.app.state.blobs
    assert list(blobs.tmp_dir.iterdir()) == []


def test_startup_removes_partial_uploads_no_live_writer_holds(
    tmp_path: Path, make_client: ClientFactory
) -> None:
    root = tmp_path / "data0"
    tmp = root / "tmp"
    tmp.mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    dead = tmp / "upload-killed"  # a killed API's partial upload: nobody holds its lock
    dead.write_bytes(b"x" * 1000)
    os.utime(dead, (an_hour_ago, an_hour_ago))
    fresh = tmp / ".new-upload-x"  # a writer that has not locked it yet
    fresh.write_bytes(b"y")
    # A live upload of a slow client (another API process sharing the data directory):
    # untouched for an hour, but its writer holds the lock.
    live = BlobStore(root).begin_upload()
    live.write(b"z" * 10)
    live_path = next(p for p in tmp.iterdir() if p not in (dead, fresh))
    os.utime(live_path, (an_hour_ago, an_hour_ago))
    try:
        make_client()
        assert sorted(p.name for p in tmp.iterdir()) == sorted([fresh.name, live_path.name])
        assert live.commit()[1] == 10, "the live upload still commits"
    finally:
        live.abort()


# -- quotas and limits ----------------------------------------------------------------------
def test_storage_quota_refuses_with_507_per_tenant_and_deleting_frees_it(
    make_client: ClientFactory,
) -> None:
    data = npz_bytes(samples=64)
    client = make_client(api_keys=KEYS, tenant_storage_bytes=int(len(data) * 1.5))
    first = _upload_as(client, "key-alpha", "datasets", data, "a.npz")
    assert first.status_code == 201
    again = _upload_as(client, "key-alpha", "datasets", npz_bytes(samples=65), "b.npz")
    assert again.status_code == 507, again.text
    assert again.json()["error"]["code"] == "quota_exceeded"
    assert "DEADWEIGHT_TENANT_STORAGE_BYTES" in again.json()["error"]["message"]
    assert len(blob_files(client)) == 1, "nothing of the refused upload stays"
    # Another tenant has a quota of its own.
    assert _upload_as(client, "key-beta", "datasets", data, "a.npz").status_code == 201
    client.delete(f"/v1/datasets/{first.json()['id']}", headers=_as(client, "key-alpha"))
    assert _upload_as(client, "key-alpha", "datasets", data, "c.npz").status_code == 201


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
    thread, result = _in_thread(
        lambda: _upload_as(client, "key-alpha", "datasets", npz_bytes(), "slow.npz")
    )
    assert alpha.entered.wait(10)
    busy = _upload_as(client, "key-alpha", "datasets", npz_bytes(samples=3), "next.npz")
    assert busy.status_code == 429, busy.text
    assert busy.headers["Retry-After"]
    assert "DEADWEIGHT_TENANT_UPLOADS_IN_FLIGHT" in busy.json()["error"]["message"]
    other = _upload_as(client, "key-beta", "datasets", npz_bytes(samples=3), "next.npz")
    assert other.status_code == 201, "another tenant is not held up"
    alpha.release.set()
    thread.join(10)
    assert result[0].status_code == 201
    assert (
        _upload_as(client, "key-alpha", "datasets", npz_bytes(samples=3), "n.npz").status_code
        == 201
    )


def test_models_waiting_for_inspection_are_limited_per_tenant(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(api_keys=KEYS, tenant_pending_inspections=2)
    for _ in range(2):
        assert _upload_as(client, "key-alpha", "models", model_bytes, "m.pt2").status_code == 201
    third = _upload_as(client, "key-alpha", "models", model_bytes, "m.pt2")
    assert third.status_code == 429, third.text
    assert third.headers["Retry-After"]
    assert _upload_as(client, "key-beta", "models", model_bytes, "m.pt2").status_code == 201


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


# -- a full disk ----------------------------------------------------------------------------
@pytest.fixture
def nearly_full(make_client: ClientFactory) -> Iterator[TestClient]:
    """A client whose data directory keeps more free space than any disk has."""
    client = make_client()
    settings: Settings = client.app.state.settings
    stored = upload(client, "datasets", npz_bytes(), "d.npz")
    assert stored.status_code == 201
    client.app.state.settings = settings.model_copy(update={"min_free_disk_bytes": 2**62})
    client.stored_id = stored.json()["id"]  # type: ignore[attr-defined]
    yield client


def test_an_upload_that_would_fill_the_disk_is_refused_with_507(nearly_full: TestClient) -> None:
    response = upload(nearly_full, "datasets", npz_bytes(samples=5), "e.npz")
    assert response.status_code == 507, response.text
    assert response.json()["error"]["code"] == "storage_full"
    blobs: BlobStore = nearly_full.app.state.blobs
    assert list(blobs.tmp_dir.iterdir()) == []
    assert len(blob_files(nearly_full)) == 1


def test_readyz_reports_a_full_disk_and_deletions_still_work(nearly_full: TestClient) -> None:
    ready = nearly_full.get("/readyz")
    # Degraded, not unavailable: a probe must not take away the API that frees space.
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["disk"].startswith("error: ")
    stored = nearly_full.stored_id  # type: ignore[attr-defined]
    assert nearly_full.get(f"/v1/datasets/{stored}").status_code == 200
    assert nearly_full.delete(f"/v1/datasets/{stored}").status_code == 204
    assert blob_files(nearly_full) == []
