"""A real `deadweight serve` process for the connection tests, and raw-socket helpers.

Each limit is set low (timeouts of 2 s) so the tests stay short; the defaults are the same
code with larger numbers.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import DEADWEIGHT, base_env, free_port

TIMEOUT = 2  # header and body timeouts of the servers below, in seconds


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(
    tmp: Path, nofile: int | None = None, **settings: str
) -> subprocess.Popen[bytes] | Server:
    """`deadweight serve --no-worker` on a free port; returns the Server once /healthz answers,
    or the process itself if it exited first (for tests of refusals to start)."""
    port = free_port()
    env = base_env(tmp / "data")
    env.update({f"DEADWEIGHT_{k.upper()}": v for k, v in settings.items()})
    log = tmp / f"server-{port}.log"

    def limit_fds() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit_fds,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return Server(proc, port, tmp / "data", log)
        time.sleep(0.2)
    stop(proc)
    pytest.fail(f"the API did not start:\n{log.read_text(errors='replace')[-4000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running(tmp: Path, nofile: int | None = None, **settings: str) -> Iterator[Server]:
    server = start_server(tmp, nofile, **settings)
    if not isinstance(server, Server):
        pytest.fail(f"the API exited with {server.returncode}")
    try:
        yield server
    finally:
        stop(server.proc)


@contextlib.contextmanager
def short_deadlines(tmp: Path) -> Iterator[Server]:
    """The server most connection tests share: header and body timeouts of `TIMEOUT`."""
    with running(
        tmp,
        header_timeout_seconds=str(TIMEOUT),
        body_timeout_seconds=str(TIMEOUT),
        max_connections="400",
    ) as started:
        yield started


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the seconds that took."""
    start = time.monotonic()
    sock.settimeout(limit)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - start


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body (what the API sends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    top, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in top.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return data


def head(server: Server, method: str, path: str, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
