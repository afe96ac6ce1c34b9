"""An upload's file while it is checked and after: another tenant's refusal or deletion of
the same bytes keeps it, and a failed upload or a killed API leaves nothing behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import service.routes.datasets as dataset_routes
from jobs.blobs import BlobStore
from tests.service.api_helpers import ClientFactory, blob_files, npz_bytes, upload
from tests.service.upload_gates import KEYS, as_tenant, holds, in_thread, open_gates, upload_as


@pytest.fixture
def keyed(make_client: ClientFactory) -> TestClient:
    return make_client(api_keys=KEYS)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from open_gates(monkeypatch)


def test_another_tenants_refusal_of_the_same_bytes_keeps_a_validating_upload(
    keyed: TestClient, gate: Any
) -> None:
    data = npz_bytes()
    alpha = gate("alpha.npz")
    thread, result = in_thread(lambda: upload_as(keyed, "key-alpha", "datasets", data, "alpha.npz"))
    assert alpha.entered.wait(10)
    # Beta sends the same bytes, refused (label_column is for CSV only): its blob is alpha's.
    refused = upload_as(keyed, "key-beta", "datasets", data, "beta.npz", label_column="y")
    assert refused.status_code == 422
    assert len(blob_files(keyed)) == 1, "the refusal removed the blob alpha is validating"
    alpha.release.set()
    thread.join(10)
    assert result[0].status_code == 201, result[0].text
    assert len(blob_files(keyed)) == 1
    assert holds(keyed) == []


def test_another_tenants_delete_of_the_same_bytes_keeps_a_validating_upload(
    keyed: TestClient, gate: Any
) -> None:
    data = npz_bytes()
    theirs = upload_as(keyed, "key-beta", "datasets", data, "beta.npz")
    assert theirs.status_code == 201
    alpha = gate("alpha.npz")
    thread, result = in_thread(lambda: upload_as(keyed, "key-alpha", "datasets", data, "alpha.npz"))
    assert alpha.entered.wait(10)
    gone = keyed.delete(f"/v1/datasets/{theirs.json()['id']}", headers=as_tenant(keyed, "key-beta"))
    assert gone.status_code == 204
    assert len(blob_files(keyed)) == 1, "the delete removed the blob alpha is validating"
    alpha.release.set()
    thread.join(10)
    assert result[0].status_code == 201, result[0].text
    # The last reference gone, the blob goes too.
    mine = result[0].json()["id"]
    assert (
        keyed.delete(f"/v1/datasets/{mine}", headers=as_tenant(keyed, "key-alpha")).status_code
        == 204
    )
    assert blob_files(keyed) == []


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
    assert holds(client) == []
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
