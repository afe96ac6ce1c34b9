"""A private PostgreSQL server for one test, which the test may stop and start at will.

Tests that need the database to go away (a restart, a crash) must never touch the shared
server on port 5432: other tests, and other test processes, use it. This one lives in a
temporary folder, listens on a free port of 127.0.0.1 only (no Unix socket), trusts every
local connection, and is stopped and removed at teardown.

    from tests.pg_instance import PgInstance, pg_instance_fixture  # noqa: F401

    def test_x(pg_instance: PgInstance) -> None:
        url = pg_instance.url            # postgresql+psycopg://postgres@127.0.0.1:<port>/postgres
        pg_instance.stop(mode="immediate")   # a crash: no checkpoint, recovery at start
        pg_instance.start()

PostgreSQL refuses to run as root: under root the server runs as the `postgres` user.
Without `initdb` (from /usr/lib/postgresql/<version>/bin or PATH) the test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgInstance:
    bin_dir: Path
    root: Path  # holds data/ and the server's log
    port: int
    user: str | None  # the system user the server runs as (None: this process's)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clean), or `immediate` (as if it crashed)."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root, and there is no postgres user to run PostgreSQL as")
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser")
    return "postgres"


@pytest.fixture(name="pg_instance")
def pg_instance_fixture() -> Iterator[PgInstance]:
    """Import this function into a test module to use the `pg_instance` fixture."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="dw-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    instance = PgInstance(bin_dir, root, _free_port(), user)
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        if instance.running():
            with contextlib.suppress(subprocess.SubprocessError):
                instance.stop(mode="immediate")
        # The server may still be exiting: a few tries at removing its files.
        for _ in range(20):
            shutil.rmtree(root, ignore_errors=True)
            if not root.exists():
                break
            time.sleep(0.2)
