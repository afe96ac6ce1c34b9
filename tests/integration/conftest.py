"""Real processes for end-to-end tests: the API, workers, Redis and PostgreSQL.

Every process is started the way users start it (the `deadweight` console script) in a
session of its own, and its whole process group is killed at teardown, so no test leaves
processes behind.
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REDIS_URL = os.environ.get("DEADWEIGHT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_url_for_this_process() -> str:
    """Db 15 (or the configured one) for the first test process, 14 for the second, ...:
    `make test` runs two processes, and each flushes its database at every test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    base, _, db = REDIS_URL.rpartition("/")
    return f"{base}/{int(db or 0) - index}"


PG_ADMIN_URL = os.environ.get(
    "DEADWEIGHT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DEADWEIGHT = str(Path(sys.executable).with_name("deadweight"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Processes:
    """Started processes; each in its own session so its whole group can be killed."""

    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        # SIGKILL at once: nothing is checked after a test's processes are stopped, and a
        # Celery worker's warm shutdown alone takes seconds, which every such test paid.
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children (embedded worker, pool) too
        for proc in self.started:
            proc.wait()

    def dump_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.iterdir())
        )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop_all()


def base_env(data_dir: Path) -> dict[str, str]:
    """The machine's environment without any DEADWEIGHT_ setting, plus a data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADWEIGHT_")}
    env["DEADWEIGHT_DATA_DIR"] = str(data_dir)
    env["DEADWEIGHT_BATCH_SIZE"] = "128"
    return env


def wait_http(
    url: str, proc: subprocess.Popen[bytes], procs: Processes, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode}\n{procs.dump_logs()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout}s\n{procs.dump_logs()}")


@contextlib.contextmanager
def redis_database() -> Iterator[str]:
    """This test process's Redis database, emptied (skips the test when Redis is down)."""
    import redis

    url = _redis_url_for_this_process()
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"Redis is not reachable at {url}")
    client.flushdb()  # this database belongs to this test process
    yield url


@contextlib.contextmanager
def postgres_database(prefix: str = "deadweight_it") -> Iterator[str]:
    """A PostgreSQL database of its own, dropped afterwards (skips when the server is down)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    host = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{host}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    with postgres_database() as url:
        yield url
