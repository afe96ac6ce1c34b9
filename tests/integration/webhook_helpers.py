"""The webhook receiver process, and an independent check of what it received.

The signature is recomputed here from the Standard Webhooks specification, with nothing of
the service's code, so a test fails if the service signs anything but the documented form.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SECRET = "whsec_" + base64.b64encode(b"deadweight-webhook-test-key-0123").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-tenant-s-secret-key-4567").decode()
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def receiver(port: int, log: Path, status: int = 204) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m tests.integration.webhook_receiver` on 127.0.0.1:port until the block ends."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.webhook_receiver",
            str(port),
            str(log),
            str(status),
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the receiver did not start (exit {proc.poll()})")
            time.sleep(0.05)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def received(log: Path) -> list[dict[str, Any]]:
    """Every request the receiver logged, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def verify(request: dict[str, Any], secret: str, tolerance_s: float = 300) -> dict[str, Any]:
    """Check one request's Standard Webhooks signature; returns the event it carried."""
    headers, body = request["headers"], request["body"]
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < tolerance_s
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    # The header may list several space-separated signatures (key rotation).
    assert expected in headers["webhook-signature"].split(" "), (expected, headers)
    assert headers["content-type"] == "application/json"
    event: dict[str, Any] = json.loads(body)
    return event
