"""The hostile corpus through HTTP: upload, inspection, job submission and the job run.

Every hostile model is refused at upload (not an archive) or marked `invalid` by the
worker's sandboxed inspection, and a job on it is refused at submission (409 until it is
inspected, then 422); a job queued without that check fails with the reader's reason.
Every hostile dataset is refused at upload with nothing stored. The canary folder stays
empty throughout.

The sandboxed engine imports torch anew for each inspection and each job run: a sample of
each kind of refusal (`SANDBOXED_SAMPLE`) is inspected and run in the real sandbox, the rest
is inspected with the engine's work done in this process (`tests.hostile.engine_here`), the
worker's own steps around it (claim, fetch, record) unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from jobs.states import JobStatus
from tests.hostile.engine_here import run_in_this_process
from tests.hostile.unsafe_datasets import hostile_datasets
from tests.hostile.unsafe_models import hostile_models
from tests.service.api_helpers import blob_files, new_dataset, unchecked_job, upload
from worker import inspection
from worker.execute import execute_job
from worker.inspection import execute_inspection

# Inspected and run as a job in the real sandbox: a sample of each kind of refusal keeps the
# suite's time in bounds (every item is refused by the reader in tests/engine too).
SANDBOXED_SAMPLE = {
    "weight marked use_pickle",
    "path traversal",
    "operator outside the allowlist",
    "code in a symbolic expression",
    "zip bomb",
}


def test_hostile_models_are_refused_at_every_step(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    state = client.app.state
    dataset_id = new_dataset(client)["id"]
    refused_at_upload = 0
    corpus = hostile_models(tmp_path, canary)
    for item in corpus:
        response = upload(client, "models", item.data, item.filename)
        if response.status_code == 422:  # not even an archive: nothing kept
            refused_at_upload += 1
            assert response.json()["error"]["code"] == "invalid_model", item.name
            continue
        assert response.status_code == 201, (item.name, response.text)
        model_id = response.json()["id"]

        body = {"model_id": model_id, "dataset_id": dataset_id, "thresholds": [{"fraction": 0.5}]}
        # Submitted before the inspection, a job is refused until the model is ready...
        early = client.post("/v1/jobs", json=body)
        assert early.status_code == 409, (item.name, early.text)
        assert early.json()["error"]["code"] == "model_not_ready"
        with monkeypatch.context() as patch:
            if item.name in SANDBOXED_SAMPLE:
                # ...and one queued without that check fails with the reader's reason.
                early_id = unchecked_job(client, model_id, dataset_id)
                execute_job(early_id, state.store, state.blobs, state.settings)
                job = client.get(f"/v1/jobs/{early_id}").json()
                assert job["status"] == JobStatus.FAILED.value and job["error"], item.name
            else:
                patch.setattr(inspection, "run_sandboxed", run_in_this_process)
            execute_inspection(model_id, state.store, state.blobs, state.settings)
        model = client.get(f"/v1/models/{model_id}").json()
        assert model["status"] == "invalid" and model["error"], (item.name, model)
        late = client.post("/v1/jobs", json=body)
        assert late.status_code == 422, item.name
        assert late.json()["error"]["code"] == "invalid_model"
    assert refused_at_upload >= 1
    assert {item.name for item in corpus} >= SANDBOXED_SAMPLE
    assert list(canary.iterdir()) == []


def test_hostile_datasets_are_refused_at_upload(client: TestClient, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    for item in hostile_datasets(canary):
        response = upload(client, "datasets", item.data, item.filename)
        assert response.status_code == 422, (item.name, response.text)
        assert response.json()["error"]["message"], item.name
    assert blob_files(client) == []  # nothing kept
    assert list(canary.iterdir()) == []


@pytest.fixture
def client(make_client):  # type: ignore[no-untyped-def]
    return make_client(max_upload_bytes=256 * 1024**2)  # room for the zip bomb
