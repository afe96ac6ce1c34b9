"""Crash tests with real processes: the API, Redis, PostgreSQL and `deadweight worker`s.

Workers are killed the hard way (SIGKILL) mid-job; the lease (5 s here) runs out, a
reaper puts the job back on the queue, and it ends `succeeded` with one complete result
set, or `failed` with the reason once its attempts are used up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch import nn

from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http
from tests.tiny_models import export_to

pytestmark = pytest.mark.integration

THRESHOLDS = [{"fraction": f / 10} for f in range(1, 4)]
TERMINAL = {"succeeded", "failed", "cancelled"}
LONG = [{"fraction": f / 20} for f in range(1, 20)]  # a job still running when acted on


class Wide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 256), nn.Linear(256, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@dataclass
class Cluster:
    client: httpx.Client
    env: dict[str, str]
    procs: Processes
    data_dir: Path
    model_id: str
    dataset_id: str

    def worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        # One job at a time, so that which job runs when is up to the test.
        env = {**self.env, **extra_env}
        return self.procs.start("worker", [DEADWEIGHT, "worker", "--concurrency", "1"], env)

    def submit(self, thresholds: list[dict[str, float]] = THRESHOLDS) -> str:
        body = {"model_id": self.model_id, "dataset_id": self.dataset_id,
                "criterion": "variance", "thresholds": thresholds}  # fmt: skip
        return self.post_job(body)

    def post_job(self, body: dict[str, Any], timeout: float = 120) -> str:
        """Submit once the model is inspected: until a worker has done so, the API answers
        409 model_not_ready (with Retry-After), as a client would be told to wait."""
        deadline = time.monotonic() + timeout
        response = self.client.post("/v1/jobs", json=body)
        while response.status_code == 409 and time.monotonic() < deadline:
            assert response.json()["error"]["code"] == "model_not_ready", response.text
            time.sleep(0.5)
            response = self.client.post("/v1/jobs", json=body)
        assert response.status_code == 202, (response.text, self.procs.dump_logs())
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/v1/jobs/{job_id}").json()  # type: ignore[no-any-return]

    def wait(self, job_id: str, statuses: set[str], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.job(job_id)
            if record["status"] in statuses:
                return record
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} still {record}\n{self.procs.dump_logs()}")

    def assert_complete(self, job_id: str, candidates: int = len(THRESHOLDS)) -> None:
        response = self.client.get(f"/v1/jobs/{job_id}/results")
        assert response.status_code == 200, response.text
        results = response.json()
        assert [c["index"] for c in results["candidates"]] == list(range(candidates))
        names = [a["name"] for a in self.client.get(f"/v1/jobs/{job_id}/artifacts").json()]
        assert len(names) == len(set(names)) and "results.json" in names
        published = {p.name for p in (self.data_dir / "jobs" / job_id).iterdir()}
        assert published == set(names) | {".manifest.json"}  # nothing half-written or extra
        leftovers = list((self.data_dir / "jobs").glob(f".{job_id}*"))
        assert leftovers == [], leftovers


def start_cluster(
    processes: Processes, broker_url: str, postgres_url: str, tmp_path: Path
) -> Iterator[Cluster]:
    data_dir = tmp_path / "data"
    env = base_env(data_dir)
    env.update(
        DEADWEIGHT_BROKER_URL=broker_url,
        DEADWEIGHT_DATABASE_URL=postgres_url,
        DEADWEIGHT_LEASE_SECONDS="5",
        DEADWEIGHT_MAX_ATTEMPTS="3",
        DEADWEIGHT_BATCH_SIZE="64",
        # These jobs are about crashes and outages: timing candidates would only lengthen
        # them (and give the suite's timings the old ones, which the kills were tuned to).
        DEADWEIGHT_MEASURE_LATENCY="false",
    )
    port = free_port()
    api = processes.start("api", [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/readyz", api, processes)
    torch.manual_seed(0)
    model = export_to(Wide(), tmp_path / "wide.pt2", d_in=16)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(10_000, 16)).astype(np.float32),
             y=rng.integers(0, 4, size=10_000))  # fmt: skip
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        ids = []
        for route, path in (("/v1/models", model), ("/v1/datasets", tmp_path / "data.npz")):
            with path.open("rb") as fh:
                response = client.post(route, files={"file": (path.name, fh)})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        yield Cluster(client, env, processes, data_dir, ids[0], ids[1])


@pytest.fixture
def cluster(
    processes: Processes, redis_url: str, postgres_url: str, tmp_path: Path
) -> Iterator[Cluster]:
    yield from start_cluster(processes, redis_url, postgres_url, tmp_path)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), read from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry.name)] = (ppid, cmdline)
    return out


def _engine_parent(job_id: str, timeout: float = 120) -> int:
    """The pool child running `job_id`: the parent of the sandboxed engine whose working
    directory is that job's (`.<id>.attempt-<n>.work`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, (ppid, cmdline) in _processes().items():
            if "worker.engine_process" not in cmdline:
                continue
            with contextlib.suppress(OSError):
                if job_id in os.readlink(f"/proc/{pid}/cwd"):
                    return ppid
        time.sleep(0.1)
    raise AssertionError(f"no engine process appeared for job {job_id}")


def _running(cluster: Cluster, job_id: str) -> None:
    record = cluster.wait(job_id, {"running"} | TERMINAL, timeout=120)
    assert record["status"] == "running", record


def test_the_whole_worker_killed_mid_job_then_a_new_one_finishes_it(cluster: Cluster) -> None:
    first = cluster.worker()
    job_id = cluster.submit()
    _running(cluster, job_id)
    _engine_parent(job_id)  # the engine is at work
    os.killpg(first.pid, signal.SIGKILL)  # supervisor, pool children and the engine
    first.wait()
    cluster.worker()
    final = cluster.wait(job_id, TERMINAL)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    cluster.assert_complete(job_id)


def test_only_the_child_running_the_job_killed(cluster: Cluster) -> None:
    cluster.worker()
    job_id = cluster.submit()
    _running(cluster, job_id)
    os.kill(_engine_parent(job_id), signal.SIGKILL)  # the pool child; its engine dies too
    final = cluster.wait(job_id, TERMINAL)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    cluster.assert_complete(job_id)


def test_a_job_that_always_loses_its_worker_fails_and_the_queue_drains(
    cluster: Cluster,
) -> None:
    cluster.worker()
    doomed, after = cluster.submit(LONG), cluster.submit()
    killed = set()
    deadline = time.monotonic() + 240
    while cluster.job(doomed)["status"] not in TERMINAL:
        assert time.monotonic() < deadline, cluster.procs.dump_logs()
        job = cluster.job(doomed)
        if job["status"] == "running" and job["attempts"] not in killed:
            os.kill(_engine_parent(doomed), signal.SIGKILL)
            killed.add(job["attempts"])
        time.sleep(0.2)
    final = cluster.job(doomed)
    assert final["status"] == "failed" and killed == {1, 2, 3}, final
    assert "lost 3 times" in final["error"] and "DEADWEIGHT_MAX_ATTEMPTS=3" in final["error"]
    assert cluster.wait(after, TERMINAL)["status"] == "succeeded"  # the worker goes on


def test_cancel_a_running_job_then_the_next_one_runs(cluster: Cluster) -> None:
    cluster.worker()
    running, waiting = cluster.submit(LONG), cluster.submit()
    _running(cluster, running)
    asked = time.monotonic()
    assert cluster.client.post(f"/v1/jobs/{running}/cancel").status_code == 200
    assert cluster.wait(running, TERMINAL, timeout=30)["status"] == "cancelled"
    assert time.monotonic() - asked < 10
    assert list((cluster.data_dir / "jobs").glob(f"*{running}*")) == []
    assert cluster.wait(waiting, TERMINAL)["status"] == "succeeded"


def _redis(processes: Processes, port: int) -> subprocess.Popen[bytes]:
    """A Redis of this test's own that keeps nothing on disk, as the CI's does."""
    proc = processes.start(
        "redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no"], {"PATH": os.environ["PATH"]},
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc
        time.sleep(0.1)
    raise AssertionError("redis-server did not start")


def test_redis_restarted_while_jobs_are_queued(
    processes: Processes, postgres_url: str, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = _redis(processes, port)
    started = start_cluster(processes, f"redis://127.0.0.1:{port}/0", postgres_url, tmp_path)
    cluster = next(started)
    try:
        cluster.worker()
        jobs = [cluster.submit() for _ in range(2)]
        _running(cluster, jobs[0])
        os.killpg(redis.pid, signal.SIGKILL)  # the queued messages are gone with it
        redis.wait()
        _redis(processes, port)
        for job_id in jobs:
            assert cluster.wait(job_id, TERMINAL, timeout=180)["status"] == "succeeded"
            cluster.assert_complete(job_id)
        logs = [p.read_text(errors="replace") for p in processes.logs.iterdir()]
        assert any("its message is gone: sending it again" in text for text in logs)
    finally:
        started.close()


@pytest.fixture
def fs_cluster(processes: Processes, postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """The filesystem broker (no Redis): what this test needs is the worker and the store."""
    yield from start_cluster(processes, "filesystem://", postgres_url, tmp_path)


def test_a_crash_between_publishing_and_recording_success(fs_cluster: Cluster) -> None:
    # The pool child dies (SIGKILL) right after renaming attempt 1's result set into place,
    # before `succeeded` is written: the published set is the job's outcome.
    fs_cluster.worker(DW_TEST_CRASH_AFTER_PUBLISH="1")
    job_id = fs_cluster.submit()
    final = fs_cluster.wait(job_id, TERMINAL)
    assert final["status"] == "succeeded", (final, fs_cluster.procs.dump_logs())
    assert final["attempts"] == 1 and final["error"] is None  # recorded, never re-run
    fs_cluster.assert_complete(job_id)
    logs = [p.read_text(errors="replace") for p in fs_cluster.procs.logs.iterdir()]
    assert any("lost after publishing; recorded succeeded" in text for text in logs)
