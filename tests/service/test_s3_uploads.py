"""The API on an S3 blob store (moto's server, a real process): uploads go to the bucket and
leave nothing on the API's disk, refused ones leave nothing anywhere, and a store that
cannot be reached is a 503 (and /readyz says which dependency)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jobs.blob_writer import SPOOL_PREFIX
from tests.s3_server import CREDENTIALS, S3Server, running_s3_server
from tests.service.api_helpers import ClientFactory, npz_bytes, upload

CLOSED_ENDPOINT = "http://127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # a store that is down fails at once


def _local_files(client: TestClient) -> list[str]:
    root = Path(client.app.state.settings.resolved_data_dir())  # type: ignore[attr-defined]
    return [
        p.relative_to(root).as_posix()
        for sub in ("blobs", "tmp", "jobs")
        for p in (root / sub).rglob("*")
        if p.is_file()
    ]


def test_uploads_live_in_the_bucket_and_refusals_nowhere(
    s3: S3Server, make_client: ClientFactory
) -> None:
    bucket = s3.new_bucket()
    client = make_client(blob_url=f"s3://{bucket}/p", s3_endpoint_url=s3.url)
    assert client.get("/readyz").json()["checks"]["blob_store"] == "ok"

    data = upload(client, "datasets", npz_bytes(), "data.npz")
    assert data.status_code == 201, data.text
    assert s3.keys(bucket) == [f"p/blobs/{data.json()['sha256']}"]

    refused = upload(client, "datasets", npz_bytes(samples=8, y=[1, 2]), "bad.npz")
    assert refused.status_code == 422, refused.text
    same = upload(client, "datasets", npz_bytes(), "again.npz")  # same bytes: one object
    assert same.status_code == 201 and same.json()["sha256"] == data.json()["sha256"]
    assert s3.keys(bucket) == [f"p/blobs/{data.json()['sha256']}"]
    # The API's disk was a spool: the local copies went once the checks were done.
    assert _local_files(client) == []

    assert client.delete(f"/v1/datasets/{data.json()['id']}").status_code == 204
    assert s3.keys(bucket) == [f"p/blobs/{data.json()['sha256']}"]  # `same` still uses it
    assert client.delete(f"/v1/datasets/{same.json()['id']}").status_code == 204
    assert s3.keys(bucket) == []


def test_no_refusal_leaves_a_spool_copy_and_dead_requests_copies_are_swept(
    s3: S3Server, make_client: ClientFactory
) -> None:
    client = make_client(blob_url=f"s3://{s3.new_bucket()}/p", s3_endpoint_url=s3.url)
    # Refused on its form fields, before the file is read: its copy goes all the same.
    both = upload(client, "datasets", npz_bytes(), "d.npz", label_column="y", no_labels="true")
    assert both.status_code == 422, both.text
    assert _local_files(client) == []

    # A request that died mid-check left its copy; the next upload sweeps it once it is
    # older than any check can take, and leaves a young one (a check in progress) alone.
    tmp = Path(client.app.state.settings.resolved_data_dir()) / "tmp"  # type: ignore[attr-defined]
    stale, young = tmp / f"{SPOOL_PREFIX}dead", tmp / f"{SPOOL_PREFIX}busy"
    for path in (stale, young):
        path.write_bytes(b"an upload's local copy")
    os.utime(stale, (0, 0))
    assert upload(client, "datasets", npz_bytes(), "data.npz").status_code == 201
    assert _local_files(client) == [f"tmp/{young.name}"]


def test_a_store_that_cannot_be_reached_is_a_503(make_client: ClientFactory) -> None:
    client = make_client(
        raise_server_exceptions=False, blob_url="s3://bucket", s3_endpoint_url=CLOSED_ENDPOINT
    )
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["blob_store"].startswith("error")
    assert "blob_store" in ready.json()["error"]["message"]

    response = upload(client, "datasets", npz_bytes(), "data.npz")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "blob_store_unavailable"
    assert response.headers["retry-after"] == "5"
    assert _local_files(client) == []  # the spooled upload was discarded
