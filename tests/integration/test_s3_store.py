"""The job path on the S3 blob store, with real processes: moto's S3 server, Redis,
PostgreSQL, two APIs (downloads streamed; presigned redirects) and two `deadweight worker`s.

Every Deadweight process has a data directory of its own: the workers share nothing but the
bucket, the broker and the database, so a model one of them inspected and the inputs each
job reads can only have come through the bucket. Upload, inspection, two jobs at once,
results, artifact downloads (streamed, a byte range, a presigned redirect), retention and
deletion; at the end nothing of any of it is left in the bucket or on any disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sqlalchemy import update

from jobs.store import JobStore
from jobs.tables import DatasetRow, JobRow, utcnow
from tests.integration.s3_cluster import Cluster, start_cluster
from tests.tiny_models import MLP, export_to
from worker.sandbox.standby import STANDBY_PREFIX as STANDBY

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "cancelled"}
THRESHOLDS = [{"fraction": 0.25}, {"fraction": 0.5}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("s3-cluster"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("s3-files")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    paths = {"model": export_to(MLP(), root / "model.pt2")}
    for name, samples in (("data", 512), ("eval", 256), ("unused", 64)):
        paths[name] = root / f"{name}.npz"
        np.savez(
            paths[name],
            x=rng.normal(size=(samples, 6)).astype(np.float32),
            y=rng.integers(0, 4, size=samples),
        )
    return paths


def test_the_job_path_with_two_workers_that_share_only_the_bucket(
    cluster: Cluster, files: dict[str, Path], tmp_path: Path
) -> None:
    ready = cluster.api.get("/readyz").json()
    assert ready["checks"]["blob_store"] == "ok", ready
    ids = {name: _upload(cluster, name, path) for name, path in files.items()}
    cluster.wait_for("the model is not inspected", lambda: _model_status(cluster, ids) != "pending")
    assert _model_status(cluster, ids) == "ready", cluster.procs.dump_logs()

    jobs = [_submit(cluster, ids) for _ in range(2)]
    for job_id in jobs:
        cluster.wait_for(
            f"job {job_id} has not ended", lambda j=job_id: _status(cluster, j) in TERMINAL
        )
        assert _status(cluster, job_id) == "succeeded", cluster.procs.dump_logs()
    # One job each: neither worker had the other's files (or the model it inspected).
    started = [_jobs_started(cluster, name) for name in ("worker-a", "worker-b")]
    assert sorted(map(len, started)) == [1, 1] and {*started[0], *started[1]} == set(jobs)

    _check_downloads(cluster, jobs[0], tmp_path)
    _check_no_local_copies(cluster, jobs)
    _check_retention(cluster, jobs[0], ids["unused"])
    _check_deletion(cluster, jobs[1], ids)


def _upload(cluster: Cluster, name: str, path: Path) -> str:
    route = "/v1/models" if name == "model" else "/v1/datasets"
    with path.open("rb") as fh:
        response = cluster.api.post(route, files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    record = response.json()
    assert f"blobs/{record['sha256']}" in cluster.keys("blobs/")
    return str(record["id"])


def _model_status(cluster: Cluster, ids: dict[str, str]) -> str:
    return str(cluster.api.get(f"/v1/models/{ids['model']}").json()["status"])


def _status(cluster: Cluster, job_id: str) -> str:
    return str(cluster.api.get(f"/v1/jobs/{job_id}").json()["status"])


def _submit(cluster: Cluster, ids: dict[str, str]) -> str:
    body = {
        "model_id": ids["model"],
        "dataset_id": ids["data"],
        "eval_dataset_id": ids["eval"],
        "criterion": "variance",
        "thresholds": THRESHOLDS,
    }
    response = cluster.api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _jobs_started(cluster: Cluster, worker: str) -> list[str]:
    log = next(cluster.procs.logs.glob(f"{worker}-*.log")).read_text(errors="replace")
    return [
        line.split("job ", 1)[1].split()[0]
        for line in log.splitlines()
        if " attempt 1 started" in line
    ]


def _check_downloads(cluster: Cluster, job_id: str, tmp_path: Path) -> None:
    results = cluster.api.get(f"/v1/jobs/{job_id}/results").json()
    assert [c["index"] for c in results["candidates"]] == [0, 1]
    stats = cluster.api.get(f"/v1/jobs/{job_id}/stats")
    assert stats.status_code == 200 and stats.json()["layers"]
    listing = {a["name"]: a for a in cluster.api.get(f"/v1/jobs/{job_id}/artifacts").json()}
    chosen = results["candidates"][1]
    name = chosen["artifact"]
    assert {"results.json", "stats.json", name} <= set(listing)

    streamed = cluster.api.get(f"/v1/jobs/{job_id}/artifacts/{name}")
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"] == "application/zip"
    assert (
        int(streamed.headers["content-length"]) == listing[name]["bytes"] == len(streamed.content)
    )
    assert streamed.headers["content-disposition"] == f'attachment; filename="{name}"'
    ranged = cluster.api.get(f"/v1/jobs/{job_id}/artifacts/{name}", headers={"Range": "bytes=4-13"})
    assert ranged.status_code == 206 and ranged.content == streamed.content[4:14]
    bad = cluster.api.get(
        f"/v1/jobs/{job_id}/artifacts/{name}", headers={"Range": "bytes=99999999-"}
    )
    assert bad.status_code == 416 and bad.json()["error"]["code"] == "range_not_satisfiable"

    redirect = cluster.presigning.get(f"/v1/jobs/{job_id}/artifacts/{name}")
    assert redirect.status_code == 307, redirect.text
    location = redirect.headers["location"]
    assert location.startswith(f"{cluster.s3.url}/{cluster.bucket}/") and "Signature" in location
    followed = httpx.get(location, timeout=30)
    assert followed.status_code == 200 and followed.content == streamed.content
    # The JSON routes stay proxied whatever the setting.
    assert cluster.presigning.get(f"/v1/jobs/{job_id}/results").json() == results

    local = tmp_path / name
    local.write_bytes(followed.content)
    program = torch.export.load(local)  # trusted: the service wrote this file
    assert sum(p.numel() for p in program.parameters()) == chosen["parameters"]
    missing = cluster.api.get(f"/v1/jobs/{job_id}/artifacts/..%2Fmanifest.json")
    assert missing.status_code == 404


def _check_no_local_copies(cluster: Cluster, jobs: list[str]) -> None:
    """The APIs' disks were a spool, the workers' a working area: nothing stayed on any."""
    for name, root in cluster.dirs.items():
        blobs = [p for p in (root / "blobs").rglob("*") if p.is_file()]
        # A worker's waiting engine has its folder there (`worker.sandbox.standby`).
        spooled = [p.name for p in (root / "tmp").glob("*") if not p.name.startswith(STANDBY)]
        published = [p.name for p in (root / "jobs").glob("*")] if (root / "jobs").exists() else []
        assert (blobs, spooled, published) == ([], [], []), name
    for job_id in jobs:  # the published set, and nothing of any other attempt
        names = [a["name"] for a in cluster.api.get(f"/v1/jobs/{job_id}/artifacts").json()]
        expected = [f"jobs/{job_id}/attempt-1/{n}" for n in names]
        assert cluster.keys(f"jobs/{job_id}/") == [
            *sorted(expected),
            f"jobs/{job_id}/manifest.json",
        ]


def _check_retention(cluster: Cluster, job_id: str, unused_dataset: str) -> None:
    """A job and an upload past RETENTION_DAYS go, with their keys, at a reaper's next pass."""
    sha = cluster.api.get(f"/v1/datasets/{unused_dataset}").json()["sha256"]
    store = JobStore(cluster.database_url)
    past = utcnow() - timedelta(days=31)
    with store.database.session() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id).values(finished_at=past))
        session.execute(
            update(DatasetRow).where(DatasetRow.id == unused_dataset).values(created_at=past)
        )
    store.dispose()
    cluster.wait_for(
        "the expired job is still there",
        lambda: cluster.api.get(f"/v1/jobs/{job_id}").status_code == 404,
    )
    cluster.wait_for(
        "the expired job's keys are still there", lambda: cluster.keys(f"jobs/{job_id}/") == []
    )
    cluster.wait_for(
        "the expired upload's blob is still there",
        lambda: f"blobs/{sha}" not in cluster.keys("blobs/"),
    )
    assert cluster.api.get(f"/v1/datasets/{unused_dataset}").status_code == 404


def _check_deletion(cluster: Cluster, job_id: str, ids: dict[str, str]) -> None:
    assert cluster.api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert cluster.keys(f"jobs/{job_id}/") == []
    for name in ("model", "data", "eval"):
        route = "/v1/models" if name == "model" else "/v1/datasets"
        assert cluster.api.delete(f"{route}/{ids[name]}").status_code == 204
    assert cluster.keys() == []  # nothing of any upload or job is left in the bucket
