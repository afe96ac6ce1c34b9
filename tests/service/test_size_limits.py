"""Size limits: samples, values per sample, model parameters, the sandbox's memory."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from jobs.settings import GIB, Settings
from tests.service.api_helpers import (
    ClientFactory,
    blob_files,
    new_dataset,
    npz_bytes,
    unchecked_job,
    upload,
)
from worker.execute import execute_job
from worker.inspection import execute_inspection


def test_datasets_over_the_sample_or_feature_limits_are_422(make_client: ClientFactory) -> None:
    client = make_client(max_samples=100, max_features=12)
    assert (
        upload(client, "datasets", npz_bytes(samples=100, features=12), "ok.npz").status_code == 201
    )
    many = upload(client, "datasets", npz_bytes(samples=101, features=4), "many.npz")
    assert many.status_code == 422 and "101 samples" in many.json()["error"]["message"]
    wide = upload(client, "datasets", npz_bytes(samples=10, features=13), "wide.npz")
    assert wide.status_code == 422
    assert "DEADWEIGHT_MAX_FEATURES" in wide.json()["error"]["message"]
    images = np.zeros((4, 3, 8, 8), np.float32)  # 192 values per sample
    square = upload(client, "datasets", npz_bytes(samples=4, features=1, x=images), "img.npz")
    assert square.status_code == 422 and "192 values per sample" in square.text
    assert len(blob_files(client)) == 1  # only the accepted one is kept


def test_models_over_the_parameter_limit_are_refused_by_inspection_and_jobs(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client: TestClient = make_client(max_parameters=66)  # the test model has 67
    state = client.app.state
    model_id = upload(client, "models", model_bytes, "mlp.pt2").json()["id"]
    # Queued before the inspection (submission refuses that now: 409 model_not_ready).
    job_id = unchecked_job(client, model_id, new_dataset(client)["id"])

    execute_job(job_id, state.store, state.blobs, state.settings)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "67 parameters" in job["error"] and "DEADWEIGHT_MAX_PARAMETERS" in job["error"]

    execute_inspection(model_id, state.store, state.blobs, state.settings)
    model = client.get(f"/v1/models/{model_id}").json()
    assert model["status"] == "invalid" and "at most 66" in model["error"]


def test_the_job_memory_limit_is_0_or_at_least_a_gib(tmp_path: object) -> None:
    assert Settings(job_memory_bytes=0).job_memory_bytes == 0
    assert Settings(job_memory_bytes=GIB).job_memory_bytes == GIB
    with pytest.raises(ValueError, match="DEADWEIGHT_JOB_MEMORY_BYTES"):
        Settings(job_memory_bytes=GIB - 1)
