"""The real service, started as users start it, and one pruning job sent through its API.

`deadweight serve`, as `make run` starts it: the API and its two embedded workers, one for
jobs and one for model inspections (one at a time each), on a temporary data directory
(SQLite job store) and Redis database 13 (the test suite uses 15 and 14; `bench.api_load`
its own). The service runs in a session of its own, and its whole process group (workers,
pool processes, engines) is ended when the benchmark leaves the `service` block.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.upload_memory import _free_port

DEADWEIGHT = str(Path(sys.executable).with_name("deadweight"))
REDIS_URL = os.environ.get("DEADWEIGHT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
POLL_S = 0.2  # the client's polling interval: a gap a user's client would also leave
FINISHED = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True)
class Service:
    url: str
    logs: Path


def _flush(url: str) -> None:
    """Start from an empty broker database (an earlier run's messages would be replayed)."""
    import redis

    redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's pool and engine children too
        proc.wait()


def _wait_ready(url: str, procs: Sequence[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.iterdir())
    raise RuntimeError(f"the service did not start\n{tails}")


@contextlib.contextmanager
def service(folder: Path) -> Iterator[Service]:
    """`deadweight serve` (with its embedded workers) on a data directory in `folder`."""
    _flush(REDIS_URL)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADWEIGHT_")}
    env.update(DEADWEIGHT_DATA_DIR=str(folder / "data"), DEADWEIGHT_BROKER_URL=REDIS_URL)
    port = _free_port()
    commands = {"serve": [DEADWEIGHT, "serve", "--port", str(port)]}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with (logs / f"{name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, procs, logs)
        yield Service(url, logs)
    finally:
        _stop(procs)


def _upload(client: httpx.Client, route: str, path: Path) -> str:
    with path.open("rb") as f:
        response = client.post(route, files={"file": (path.name, f, "application/octet-stream")})
    response.raise_for_status()
    return str(response.json()["id"])


def http_job(url: str, model: Path, data: Path, fractions: Sequence[float]) -> dict[str, Any]:
    """What a user's client does: upload the model and the data, submit, poll until done."""
    with httpx.Client(base_url=url, timeout=600) as client:
        model_id = _upload(client, "/v1/models", model)
        dataset_id = _upload(client, "/v1/datasets", data)
        # A job on a model still being inspected is refused (409 model_not_ready): wait.
        while client.get(f"/v1/models/{model_id}").json()["status"] == "pending":
            time.sleep(POLL_S)
        body = {
            "model_id": model_id,
            "dataset_id": dataset_id,
            "thresholds": [{"fraction": f} for f in fractions],
        }
        response = client.post("/v1/jobs", json=body)
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            record: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            if record["status"] in FINISHED:
                break
            time.sleep(POLL_S)
    if record["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {record['status']}: {record.get('error')}")
    return record
