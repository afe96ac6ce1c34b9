"""Helpers shared by the service tests."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from jobs.job_config import Criterion, JobConfig, Metric, ThresholdSpec
from jobs.states import JobStatus, ModelStatus
from service.auth import OPEN_TENANT

ClientFactory = Callable[..., TestClient]  # the `make_client` fixture

CLOSED_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def npz_bytes(samples: int = 16, features: int = 4, labels: bool = True, **arrays: Any) -> bytes:
    rng = np.random.default_rng(0)
    content: dict[str, Any] = {"x": rng.normal(size=(samples, features)).astype(np.float32)}
    if labels:
        content["y"] = rng.integers(0, 3, size=samples)
    content.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **content)
    return buf.getvalue()


def upload(client: TestClient, kind: str, data: bytes, filename: str, **fields: str) -> Any:
    """POST a multipart upload to /v1/<kind>; returns the response."""
    return client.post(
        f"/v1/{kind}", files={"file": (filename, data, "application/octet-stream")}, data=fields
    )


def new_model(client: TestClient, model_bytes: bytes, ready: bool = True) -> dict[str, Any]:
    """Upload a model; `ready`: and mark it inspected, as a worker would, so that jobs may be
    submitted on it (a pending model's are refused: 409 model_not_ready). The record keeps no
    `inputs`, so the fit check is left to the tests that set them."""
    response = upload(client, "models", model_bytes, "mlp.pt2")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    if ready:
        info = {"parameters": 67, "layers": [], "frozen": []}
        client.app.state.store.models.set_inspected(body["id"], ModelStatus.READY, info, None)
        body = client.get(f"/v1/models/{body['id']}").json()
    return body


def unchecked_job(client: TestClient, model_id: str, dataset_id: str) -> str:
    """A job written straight to the store, past submission's checks (as an earlier release
    queued jobs on models not yet inspected): what the job run does with such a model."""
    config = JobConfig(
        Criterion.RECONSTRUCTION, (ThresholdSpec(fraction=0.5),), metric=Metric.AGREEMENT
    )
    job = client.app.state.store.jobs.add(OPEN_TENANT, model_id, dataset_id, None, config.to_json())
    return str(job.id)


def new_dataset(
    client: TestClient, data: bytes | None = None, filename: str = "data.npz", **fields: str
) -> dict[str, Any]:
    response = upload(client, "datasets", npz_bytes() if data is None else data, filename, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def broker_messages(client: TestClient) -> list[str]:
    """The messages waiting in the filesystem broker's queue folder, as text."""
    folder = Path(client.app.state.settings.resolved_data_dir()) / "broker" / "queue"
    return [p.read_text(errors="replace") for p in sorted(folder.iterdir())]


def blob_files(client: TestClient) -> list[Path]:
    return sorted(p for p in client.app.state.blobs.blobs_dir.rglob("*") if p.is_file())


RESULTS = {
    "baseline": {"metric": 0.97, "parameters": 67},
    "candidates": [
        {
            "index": 0,
            "threshold": {"fraction": 0.5},
            "metric": 0.96,
            "metric_drop": 0.01,
            "parameters": 35,
            "size_reduction": 0.48,
            "kept": {"0": 4},
            "artifact": "pruned-0.pt2",
        }
    ],
    "pareto": [0],
    "recommended": None,
}
PRUNED = b"PK\x03\x04 pruned"
STATS = {"layers": [{"name": "0", "neurons": 8, "mean": [0.0] * 8, "std": [1.0] * 8}]}


def publish_job(client: TestClient, job_id: str) -> Path:
    """Do what the worker does: run the job, write its files, mark it succeeded."""
    store, blobs = client.app.state.store, client.app.state.blobs
    assert store.lifecycle.start(job_id) is not None
    folder = blobs.job_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(RESULTS))
    (folder / "stats.json").write_text(json.dumps(STATS))
    (folder / "pruned-0.pt2").write_bytes(PRUNED)
    (folder / ".pruned-1.pt2.tmp").write_bytes(b"half written")
    assert store.lifecycle.finish(job_id, JobStatus.SUCCEEDED)
    return folder
