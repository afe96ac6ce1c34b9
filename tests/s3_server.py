"""A real S3-protocol server for tests: moto's standalone server (`moto_server`), a process
on a free port of 127.0.0.1, killed with its process group at teardown.

    from tests.s3_server import S3Server, running_s3_server

    with running_s3_server(log_dir) as server:
        bucket = server.new_bucket()
        env = server.env(bucket, prefix="dw")   # DEADWEIGHT_BLOB_URL, endpoint, AWS_* vars

moto keeps everything in memory: a bucket per test (or module) keeps tests apart. Without
`moto_server` (the dev extra is not installed) the test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.blob_stores import open_blob_store
from jobs.s3_blobs import S3BlobStore
from jobs.settings import Settings

# moto accepts any credentials; boto3 needs some, and a region to sign with.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "deadweight-test",
    "AWS_SECRET_ACCESS_KEY": "deadweight-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never a developer's own profile or credentials file.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class S3Server:
    url: str  # the endpoint, http://127.0.0.1:<port>

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = f"dw-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """What a Deadweight process needs to use `bucket` (under `prefix`) on this server."""
        return {
            **CREDENTIALS,
            "DEADWEIGHT_BLOB_URL": f"s3://{bucket}/{prefix}".rstrip("/"),
            "DEADWEIGHT_S3_ENDPOINT_URL": self.url,
        }

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_s3_server(log_dir: Path) -> Iterator[S3Server]:
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists() and shutil.which("moto_server") is None:
        pytest.skip("moto_server is not installed (pip install -e '.[dev]')")
    port = _free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "moto_server.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(binary) if binary.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        server = S3Server(f"http://127.0.0.1:{port}")
        _wait(server, proc, log_dir)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait(server: S3Server, proc: subprocess.Popen[bytes], log_dir: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (log_dir / "moto_server.log").read_text(errors="replace")
            pytest.fail(f"moto_server exited with {proc.returncode}\n{log}")
        try:
            # The server answers its own dashboard path once it serves requests.
            httpx.get(f"{server.url}/moto-api/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("moto_server did not answer within 30 s")


def s3_blob_store(
    server: S3Server, bucket: str, prefix: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> S3BlobStore:
    """The blob store a process with these settings opens: `s3://bucket/prefix` on `server`,
    the test credentials in the environment (as boto3 reads them)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        data_dir=data_dir, blob_url=f"s3://{bucket}/{prefix}", s3_endpoint_url=server.url
    )
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    return store
