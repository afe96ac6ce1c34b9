"""Slow and idle clients against a real `deadweight serve` process, over raw sockets.

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
from tests.service.api_helpers import npz_bytes

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("api"),
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


def _tmp_files(server: Server) -> list[Path]:
    tmp = server.data_dir / "tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def test_a_stalled_upload_gets_408_and_leaves_no_file(server: Server) -> None:
    boundary = "deadweightboundary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="data.npz"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode() + b"\0" * 200_000
    with connect(server) as sock:
        sock.sendall(
            head(
                server,
                "POST",
                "/v1/datasets",
                Content_Type=f"multipart/form-data; boundary={boundary}",
                Content_Length="1000000",
            )
            + part
        )
        time.sleep(TIMEOUT / 2)
        assert _tmp_files(server), "the partial upload was not being written"
        received, seconds = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert b'"request_timeout"' in received and b"DEADWEIGHT_BODY_TIMEOUT_SECONDS" in received
    assert seconds < TIMEOUT + 2
    assert _tmp_files(server) == []


def test_a_stalled_json_body_gets_408(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            head(server, "POST", "/v1/jobs", Content_Type="application/json", Content_Length="200")
            + b'{"model_id": "'
        )
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received


def test_a_trickled_json_body_must_arrive_whole_in_time(server: Server) -> None:
    """A byte every 0.3 s never pauses long, yet a small body gets only the timeout in all."""
    start = time.monotonic()
    with connect(server) as sock:
        sock.sendall(
            head(server, "POST", "/v1/jobs", Content_Type="application/json", Content_Length="500")
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(100):
                sock.sendall(b" ")
                time.sleep(0.3)
                if time.monotonic() - start > TIMEOUT + 3:
                    break
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert time.monotonic() - start < TIMEOUT + 2


def _rss_mib(server: Server) -> int:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def test_a_huge_json_body_is_refused_before_it_is_read(server: Server) -> None:
    """FastAPI reads a JSON body whole, before authentication: 300 MB used to cost 800 MB."""
    before = _rss_mib(server)
    with connect(server) as sock:
        sock.sendall(
            head(
                server,
                "POST",
                "/v1/jobs",
                Content_Type="application/json",
                Content_Length=str(300 * 1024 * 1024),
            )
            + b"[1"
            + b",1" * 100_000
        )
        received, seconds = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413"), received
    # At once, not after the 300 MB that never come (a loaded CI machine gets some slack).
    assert b"/v1/datasets" in received and seconds < 3
    assert _rss_mib(server) < before + 20


def test_a_chunked_json_body_is_cut_off_past_the_cap(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            head(
                server,
                "POST",
                "/v1/jobs",
                Content_Type="application/json",
                Transfer_Encoding="chunked",
            )
        )
        chunk = b"[" + b"1," * 32_000
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(40):  # 2.5 MB in all
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413"), received


def test_uploads_are_not_held_to_the_json_cap(server: Server) -> None:
    big = npz_bytes(samples=40_000, features=8, labels=False)  # 1.3 MB
    assert len(big) > 1024 * 1024
    response = httpx.post(
        f"{server.url}/v1/datasets",
        files={"file": ("big.npz", big, "application/octet-stream")},
        timeout=60,
    )
    assert response.status_code == 201, response.text


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


def _published_artifact(server: Server, size: int) -> str:
    """A finished job with one large artifact, written as the worker would."""
    from jobs.states import JobStatus
    from jobs.store import JobStore

    store = JobStore(f"sqlite:///{server.data_dir / 'deadweight.db'}")
    try:
        job = store.add_job("default", "m" * 32, "d" * 32, None, {}).id
        assert store.start_job(job) is not None
        folder = server.data_dir / "jobs" / job
        folder.mkdir(parents=True)
        (folder / "big.pt2").write_bytes(os.urandom(size))
        assert store.finish_job(job, JobStatus.SUCCEEDED)
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
