"""The data directory under pressure, with real processes: an API killed mid-upload, and a
disk (a small tmpfs) filled up in embedded and in scaled mode."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http

pytestmark = pytest.mark.integration

DISK_BYTES = 48 * 1024 * 1024


def _npz(samples: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(samples)
    np.savez(buf, x=rng.normal(size=(samples, 8)).astype(np.float32))
    return buf.getvalue()


def _serve(procs: Processes, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = procs.start("api", [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc, procs)
    return proc, url


def _upload(url: str, data: bytes, name: str = "d.npz") -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")}
    return httpx.post(f"{url}/v1/datasets", files=files, timeout=60)


def test_an_api_killed_mid_upload_leaves_nothing_after_restart(
    processes: Processes, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = base_env(data_dir)
    api, url = _serve(processes, env)
    port = int(url.rsplit(":", 1)[1])
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.npz"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                "POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
            ).encode()
            + head
        )
        for _ in range(40):  # 10 MiB of a 64 MiB body, then the API dies
            sock.sendall(b"\0" * 256 * 1024)
        partial = _wait_for_partial(data_dir / "tmp")
        os.killpg(api.pid, signal.SIGKILL)
        api.wait()
    assert partial.stat().st_size > 0
    _serve(processes, env)
    assert list((data_dir / "tmp").iterdir()) == []
    assert list((data_dir / "blobs").rglob("*.*")) == []


def _wait_for_partial(tmp: Path) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = [p for p in tmp.iterdir() if p.stat().st_size > 1024 * 1024] if tmp.is_dir() else []
        if files:
            return files[0]
        time.sleep(0.1)
    pytest.fail("the API wrote no partial upload")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES (root only); unmounted after the processes have stopped."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write until the disk refuses: what a runaway job or another tenant would do."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\xff" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", ["embedded", "scaled"])
def test_a_full_data_directory_gives_clear_errors_and_recovers(
    mode: str, small_disk: Path, processes: Processes, request: pytest.FixtureRequest
) -> None:
    env = base_env(small_disk / "data")
    if mode == "scaled":
        env["DEADWEIGHT_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        env["DEADWEIGHT_BROKER_URL"] = request.getfixturevalue("redis_url")
    # No reserve of free space: the upload must meet the full disk itself.
    env["DEADWEIGHT_MIN_FREE_DISK_BYTES"] = "0"
    _, url = _serve(processes, env)
    kept = _upload(url, _npz(64))
    assert kept.status_code == 201, kept.text
    filler = small_disk / "filler"
    _fill(filler)

    def chunks() -> Iterator[bytes]:  # no Content-Length: only the write can tell
        body = _npz(20_000)
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.npz"\r\n\r\n'
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]
        yield b"\r\n--x--\r\n"

    full = httpx.post(
        f"{url}/v1/datasets",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=60,
    )
    assert full.status_code == 507, full.text
    assert full.json()["error"]["code"] == "storage_full"
    assert list((small_disk / "data" / "tmp").iterdir()) == [], "the partial file stays"
    # Earlier data intact and readable; the probe says why no work is accepted.
    assert httpx.get(f"{url}/v1/datasets/{kept.json()['id']}").status_code == 200
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["status"] == "degraded" and ready["checks"]["disk"].startswith("error")
    # Deleting is how a user frees space: it must work on the full disk.
    assert httpx.delete(f"{url}/v1/datasets/{kept.json()['id']}").status_code == 204
    filler.unlink()
    again = _upload(url, _npz(64))
    assert again.status_code == 201, again.text
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
