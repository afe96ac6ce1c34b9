"""Deadlines against slow and idle clients, over raw sockets to a real server: the request
head must arrive in time, an idle connection is closed, a client must keep reading."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.service.live_server import (
    TIMEOUT,
    Server,
    connect,
    head,
    read_response,
    read_until_closed,
    short_deadlines,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with short_deadlines(tmp_path_factory.mktemp("api")) as started:
        yield started


def test_half_sent_headers_are_answered_408_and_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())
        received, seconds = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert b"DEADWEIGHT_HEADER_TIMEOUT_SECONDS" in received
    assert TIMEOUT - 0.5 < seconds < TIMEOUT + 2


def test_trickled_headers_do_not_extend_the_deadline(server: Server) -> None:
    """A byte every 0.3 s keeps the connection busy but still ends at the deadline."""
    start = time.monotonic()
    with connect(server) as sock:
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.3)
        read_until_closed(sock)
    assert time.monotonic() - start < TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with connect(server) as sock:
        received, seconds = read_until_closed(sock)
    assert received == b""
    assert seconds < TIMEOUT + 2


def test_keep_alive_gives_each_request_its_own_deadline(server: Server) -> None:
    """Requests on one connection keep working; the deadline restarts after each response."""
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(head(server, "GET", "/healthz"))
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(TIMEOUT * 0.6)  # twice that in all: longer than one deadline
        sock.sendall(head(server, "GET", "/healthz"))
        assert read_response(sock).startswith(b"HTTP/1.1 200")


def test_idle_connections_neither_block_others_nor_keep_descriptors(server: Server) -> None:
    idle_fds = server.fds()
    sockets = [connect(server) for _ in range(300)]
    try:
        for i, sock in enumerate(sockets):
            if i % 2:  # half never send a byte, half send half a request head
                sock.sendall(b"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.5)
        start = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - start < 3
        assert server.fds() <= idle_fds + 300 + 10
        time.sleep(TIMEOUT + 1.5)
        # Every one of them was closed by the server.
        assert all(read_until_closed(sock, limit=2)[1] < 1 for sock in sockets)
        assert server.fds() <= idle_fds + 5, server.output()
    finally:
        for sock in sockets:
            sock.close()


def _published_artifact(server: Server, size: int) -> str:
    """A finished job with one large artifact, written as the worker would."""
    from jobs.states import JobStatus
    from jobs.store import JobStore

    store = JobStore(f"sqlite:///{server.data_dir / 'deadweight.db'}")
    try:
        job = store.jobs.add("default", "m" * 32, "d" * 32, None, {}).id
        assert store.lifecycle.start(job) is not None
        folder = server.data_dir / "jobs" / job
        folder.mkdir(parents=True)
        (folder / "big.pt2").write_bytes(os.urandom(size))
        assert store.lifecycle.finish(job, JobStatus.SUCCEEDED)
    finally:
        store.dispose()
    return f"/v1/jobs/{job}/artifacts/big.pt2"


def test_a_client_that_stops_reading_a_response_is_cut_off(server: Server) -> None:
    path = _published_artifact(server, 64 * 1024 * 1024)
    sock = socket.socket()
    # A tiny receive window: the server's buffers fill at once, as with a stalled reader.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT + 2)  # read nothing more
        # Dropped: what is left to read ends well short of the 64 MiB.
        received, _ = read_until_closed(sock, limit=10)
        assert len(received) < 32 * 1024 * 1024
    finally:
        sock.close()
    # And the server serves others as before.
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
