"""A data directory with no room left: uploads refused with 507, readiness degraded, and
deletions still working."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from jobs.blobs import BlobStore
from jobs.settings import Settings
from tests.service.api_helpers import ClientFactory, blob_files, npz_bytes, upload


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
