"""What `bench.api_load` measures against: `deadweight serve` started as users start it, its
processes, and a job on the example model (one whose recovery keeps the worker busy).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

PY = sys.executable
DEADWEIGHT = str(Path(PY).with_name("deadweight"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Started processes, each in a process group of its own so the whole group can be
    stopped, all in this session.

    One session: Linux's autogroup scheduling shares the CPU fairly between sessions, then
    between the threads within one. `deadweight serve`'s job runs in its session; a
    yardstick in a session of its own would get a whole share while the API shared its
    share with the job, and the comparison would measure that instead of the code.
    """

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0
            )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]


def wait_http(url: str, proc: subprocess.Popen[bytes], procs: Processes, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}:\n{procs.tail(name)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer in time:\n{procs.tail(name)}")


@contextlib.contextmanager
def postgres_database(admin_url: str | None) -> Iterator[str | None]:
    """A database of the bench's own on the server of `admin_url`, dropped afterwards."""
    if admin_url is None:
        yield None
        return
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"deadweight_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{plain.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def upload(client: httpx.Client, route: str, path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        response = client.post(route, files={"file": (path.name, fh, "application/octet-stream")})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def wait_for(client: httpx.Client, url: str, states: set[str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    status = "?"
    while time.monotonic() < deadline:
        status = str(client.get(url).json()["status"])
        if status in states:
            return status
        time.sleep(0.3)
    raise SystemExit(f"{url} still {status} after {seconds:.0f} s")


def cancel_job(client: httpx.Client, job_id: str) -> None:
    """Cancel the job and wait for it to stop (its engine gone before the data goes)."""
    client.post(f"/v1/jobs/{job_id}/cancel")
    wait_for(client, f"/v1/jobs/{job_id}", {"cancelled", "failed", "succeeded"}, 60)


def submit_job(client: httpx.Client, example: Path, keep_running: bool) -> str:
    """A job on the example's model; with `keep_running`, one whose recovery lasts minutes."""
    model = upload(client, "/v1/models", example / "model.pt2")
    data = upload(client, "/v1/datasets", example / "data.npz")
    ready = wait_for(client, f"/v1/models/{model['id']}", {"ready", "invalid"}, 180)
    if ready != "ready":
        raise SystemExit(f"the example model was not accepted: {ready}")
    body: dict[str, Any] = {"model_id": model["id"], "dataset_id": data["id"]}
    if keep_running:
        body["thresholds"] = [{"fraction": f / 10} for f in range(1, 10)]
        body["recovery"] = {"epochs": 100, "batch_size": 8, "max_seconds": 900}
    response = client.post("/v1/jobs", json=body)
    response.raise_for_status()
    job_id = str(response.json()["id"])
    states = {"running"} if keep_running else {"succeeded", "failed"}
    wait_for(client, f"/v1/jobs/{job_id}", states | {"failed", "cancelled"}, 300)
    return job_id


def start_service(
    procs: Processes, env: dict[str, str], tmp: Path, client: httpx.Client, keep_running: bool
) -> tuple[int, str]:
    """`deadweight serve` with its embedded workers on `client`'s port, the example's model
    and data uploaded, and a job submitted; returns the API's pid and the job's ID once the
    job runs (or, without `keep_running`, has ended)."""
    port = str(client.base_url.port)
    serve = procs.start("serve", [DEADWEIGHT, "serve", "--port", port], env)
    wait_http(f"http://127.0.0.1:{port}/readyz", serve, procs, "serve")
    example = tmp / "example"
    command = [DEADWEIGHT, "example", "--out", str(example)]
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    return serve.pid, submit_job(client, example, keep_running)
