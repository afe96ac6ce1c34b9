"""Helpers for the upload tests that need tenants, or an upload held mid-validation.

`Gate` holds the validation of one file name until released, so a test can act while an
upload is "still validating"; `open_gates` is the body of a `gate` fixture that opens every
gate at teardown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import service.routes.datasets as dataset_routes
from jobs.store import JobStore

KEYS = "alpha=key-alpha,beta=key-beta"


def as_tenant(client: TestClient, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload_as(
    client: TestClient, key: str, kind: str, data: bytes, name: str, **fields: str
) -> Any:
    return client.post(
        f"/v1/{kind}",
        files={"file": (name, data, "application/octet-stream")},
        data=fields,
        headers=as_tenant(client, key),
    )


class Gate:
    """Holds the validation of one file name until released: an upload "still validating"."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, filename: str) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = dataset_routes.validate_upload

        async def gated(kind: str, path: Path, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == filename:
                self.entered.set()
                while not self.release.is_set():  # the event loop keeps serving meanwhile
                    await _sleep(0.02)
            return await real(kind, path, name, *args, **kwargs)

        monkeypatch.setattr(dataset_routes, "validate_upload", gated)


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def holds(client: TestClient) -> list[str]:
    store: JobStore = client.app.state.store
    return store.blob_refs.stale_holds(-3600)  # every hold, whatever its age


def open_gates(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Gate]]:
    """`gate(filename)` holds that file's validation; every gate opens at teardown (before
    the clients stop), so a failing test cannot leave a request hanging."""
    made: list[Gate] = []

    def make(filename: str) -> Gate:
        made.append(Gate(monkeypatch, filename))
        return made[-1]

    yield make
    for each in made:
        each.release.set()
