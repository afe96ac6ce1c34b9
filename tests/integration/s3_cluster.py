"""A cluster for the S3 store's integration test (`test_s3_store.py`): moto's S3 server,
Redis, PostgreSQL, two APIs and two workers, each Deadweight process with a data directory
of its own, started once per module and killed (process groups) at teardown."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import (
    DEADWEIGHT,
    Processes,
    base_env,
    free_port,
    postgres_database,
    redis_database,
    wait_http,
)
from tests.s3_server import S3Server, running_s3_server

PREFIX = "deadweight"  # the key prefix in the bucket


@dataclass
class Cluster:
    s3: S3Server
    bucket: str
    api: httpx.Client  # downloads streamed through the API
    presigning: httpx.Client  # downloads redirected to the bucket
    procs: Processes
    dirs: dict[str, Path]  # each process's own data directory
    database_url: str

    def keys(self, under: str = "") -> list[str]:
        return [
            k.removeprefix(PREFIX + "/") for k in self.s3.keys(self.bucket, f"{PREFIX}/{under}")
        ]

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} after {timeout}s\n{self.procs.dump_logs()}")
            time.sleep(0.3)


def start_cluster(root: Path) -> Iterator[Cluster]:
    """API `api` streams downloads, API `presigning` redirects them; workers `worker-a` and
    `worker-b`. The reapers pass every 2.5 s (`LEASE_SECONDS=5`), for the retention check."""
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    with (
        running_s3_server(root / "logs") as s3,
        redis_database() as broker,
        postgres_database("deadweight_s3") as database,
    ):
        bucket = s3.new_bucket()
        dirs = {name: root / name for name in ("api", "presigning", "worker-a", "worker-b")}
        common = {
            **s3.env(bucket, PREFIX),
            "DEADWEIGHT_BROKER_URL": broker,
            "DEADWEIGHT_DATABASE_URL": database,
            "DEADWEIGHT_LEASE_SECONDS": "5",  # the reapers pass every 2.5 s (retention)
        }
        try:
            ports = {name: free_port() for name in ("api", "presigning")}
            apis = {
                name: procs.start(
                    name,
                    [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)],
                    {**base_env(dirs[name]), **common}
                    | ({"DEADWEIGHT_S3_PRESIGNED_DOWNLOADS": "true"} if name != "api" else {}),
                )
                for name, port in ports.items()
            }
            workers = [
                procs.start(name, [DEADWEIGHT, "worker"], {**base_env(dirs[name]), **common})
                for name in ("worker-a", "worker-b")
            ]
            for name, port in ports.items():
                wait_http(f"http://127.0.0.1:{port}/readyz", apis[name], procs)
            _wait_ready(workers, procs)
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}", timeout=30) as api,
                httpx.Client(base_url=f"http://127.0.0.1:{ports['presigning']}", timeout=30) as pre,
            ):
                yield Cluster(s3, bucket, api, pre, procs, dirs, database)
        finally:
            procs.stop_all()


def _wait_ready(workers: list[Any], procs: Processes) -> None:
    """Both workers consume (Celery's `ready` line), so each can take one of two jobs."""
    logs = [next(procs.logs.glob(f"worker-{which}-*.log")) for which in "ab"]
    deadline = time.monotonic() + 90
    while not all(" ready." in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            pytest.fail(f"the workers did not start\n{procs.dump_logs()}")
        time.sleep(0.3)
