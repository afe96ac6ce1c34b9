"""The routes clients poll stay cheap: `GET /v1/jobs/{id}` makes one hop to the thread pool
(its database read), `GET /healthz` none, with or without API keys; the answers and the
checks on the way are those of any other route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from jobs.store import JobStore
from tests.service.api_helpers import ClientFactory

KEY = "key-alpha-0123456789"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The functions sent to the thread pool (FastAPI's and ours all go through anyio)."""
    sent: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        target = getattr(func, "func", func)  # Starlette hands over a functools.partial
        sent.append(getattr(target, "__qualname__", repr(target)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    yield sent


def _job_of(client: TestClient, tenant: str) -> str:
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]
    return store.jobs.add(tenant, "m" * 32, "d" * 32, None, {"criterion": "seed"}).id


@pytest.mark.parametrize("keys", [None, f"alpha={KEY}"], ids=["open", "keys"])
def test_a_poll_makes_one_hop_to_the_thread_pool(
    make_client: ClientFactory, hops: list[str], keys: str | None
) -> None:
    client = make_client(api_keys=keys)
    job_id = _job_of(client, "alpha" if keys else "default")
    hops.clear()
    response = client.get(f"/v1/jobs/{job_id}", headers=BEARER if keys else {})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == job_id and response.json()["status"] == "queued"
    assert hops == ["JobTable.get"]

    hops.clear()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert hops == []


def test_a_poll_is_checked_as_before(make_client: ClientFactory, hops: list[str]) -> None:
    client = make_client(api_keys=f"alpha={KEY},beta=key-beta-9876543210")
    job_id = _job_of(client, "alpha")
    assert client.get(f"/v1/jobs/{job_id}").status_code == 401
    wrong = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    other = {"Authorization": "Bearer key-beta-9876543210"}
    assert client.get(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=BEARER).status_code == 200
