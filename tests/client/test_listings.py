"""Listing and deleting through the client: models, datasets and jobs, with their filters."""

from __future__ import annotations

import pytest
from deadweight_client import Client, NotFound

from tests.client.conftest import Service

pytestmark = pytest.mark.integration


def test_uploads_are_listed_and_deleted(
    client: Client, service: Service, uploaded: tuple[str, str]
) -> None:
    data = client.upload_dataset(service.files / "far_labels.npz")
    assert data["id"] in {d["id"] for d in client.list_datasets(limit=200)}
    ready = client.list_models("ready", limit=200)
    assert uploaded[0] in {m["id"] for m in ready}
    assert all(m["status"] == "ready" for m in ready)
    client.delete_dataset(data["id"])
    assert data["id"] not in {d["id"] for d in client.list_datasets(limit=200)}
    with pytest.raises(NotFound):
        client.get_dataset(data["id"])


def test_jobs_are_filtered_by_model_and_status(
    client: Client, service: Service, uploaded: tuple[str, str]
) -> None:
    model, _ = uploaded
    other_data = client.upload_dataset(service.files / "data.npz")
    job = client.submit(model, other_data, thresholds="f0.3").cancel()
    by_dataset = client.list_jobs(dataset=other_data)
    assert [j.id for j in by_dataset] == [job.id]
    assert job.id in {j.id for j in client.list_jobs(model=model, limit=200)}
    assert all(j.status == "queued" for j in client.list_jobs("queued"))
    job.wait(timeout=60)
    assert job.status == "cancelled"
    job.delete()
    with pytest.raises(NotFound):
        job.refresh()
