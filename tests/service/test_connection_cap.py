"""The connection cap against a real server: a burst stays within it and the descriptor
limit, and `serve` refuses a cap the limit cannot hold."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.service.live_server import TIMEOUT, Server, running, start_server


def _burst(server: Server, count: int) -> list[socket.socket]:
    """`count` connections opened at once (non-blocking connects, none waits for another)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", server.port))
        sockets.append(sock)
    return sockets


def _refused(sock: socket.socket) -> bool:
    try:
        return sock.recv(64, socket.MSG_PEEK).startswith(b"HTTP/1.1 503")
    except OSError:  # nothing yet, or not connected yet
        return False


def test_a_burst_of_connections_stays_within_the_cap(tmp_path: Path) -> None:
    """300 connections at once against a descriptor limit they would exhaust: the server
    holds at most the cap (those beyond get 503 and are closed, or wait in the kernel's
    queue, which costs the server nothing), and it serves again after the header timeout."""
    cap = 20
    with running(
        tmp_path,
        nofile=cap + 256 + 20,  # what the server asks for, and no more than 20 to spare
        header_timeout_seconds=str(TIMEOUT),
        max_connections=str(cap),
    ) as server:
        idle_fds = server.fds()
        sockets = _burst(server, 300)
        try:
            most_fds, refused = 0, 0
            deadline = time.monotonic() + TIMEOUT - 0.5  # before the first deadline passes
            while time.monotonic() < deadline:
                most_fds = max(most_fds, server.fds())
                refused = sum(_refused(sock) for sock in sockets)
                time.sleep(0.05)
            assert refused > 0
            # Accepted sockets wait a moment for the protocol to refuse them: asyncio accepts
            # up to `backlog` (= the cap) per turn of the loop, so a few turns' worth at most.
            assert most_fds <= idle_fds + 3 * cap + 5
            time.sleep(TIMEOUT + 1)
            assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        finally:
            for sock in sockets:
                sock.close()
        assert "Too many open files" not in server.output()


def test_serve_refuses_a_cap_the_descriptor_limit_cannot_hold(tmp_path: Path) -> None:
    proc = start_server(tmp_path, nofile=300, max_connections="512")
    assert isinstance(proc, subprocess.Popen), "the server started"
    assert proc.returncode == 2
    output = (tmp_path / next(p.name for p in tmp_path.glob("server-*.log"))).read_text()
    assert "DEADWEIGHT_MAX_CONNECTIONS=512 needs 768 file descriptors" in output
    assert "ulimit -n" in output
