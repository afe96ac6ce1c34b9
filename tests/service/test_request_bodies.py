"""Request bodies against a real server: a stalled or trickled body gets 408, a large one
that is not an upload gets 413 before it is read, and uploads keep their own limits."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.api_helpers import npz_bytes
from tests.service.live_server import (
    TIMEOUT,
    Server,
    connect,
    head,
    read_until_closed,
    short_deadlines,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with short_deadlines(tmp_path_factory.mktemp("api")) as started:
        yield started


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


def test_a_get_with_a_body_is_held_to_the_cap_too(server: Server) -> None:
    """Requests without a body pass the guard untouched; one that declares a body does not,
    whatever its method."""
    assert httpx.get(f"{server.url}/v1/jobs/nope", timeout=10).status_code == 404
    with connect(server) as sock:
        sock.sendall(
            head(server, "GET", "/v1/jobs/nope", Content_Length=str(300 * 1024 * 1024))
            + b"x" * 10_000
        )
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413"), received
