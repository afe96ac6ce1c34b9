"""The job store's outages reach the client as 503/507 with a reason, bugs as 500 with an incident.

The outage itself is real: a private PostgreSQL server (never the shared one on 5432) is
stopped under a running `deadweight serve`, and started again.
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from service.main import create_app
from tests.pg_instance import PgInstance, pg_instance_fixture  # noqa: F401
from tests.service.conftest import make_settings
from tests.service.live_server import running

JOB = {"model_id": "m" * 8, "dataset_id": "d" * 8}


def assert_store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "store_unavailable"
    assert "retry" in error["message"]
    # Answered by a handler, not by a crash: the connection stays usable.
    assert response.headers.get("connection") != "close"


@pytest.mark.postgres
def test_a_postgres_restart_is_503_then_service_again(
    pg_instance: PgInstance, tmp_path: Path
) -> None:
    with (
        running(tmp_path, database_url=pg_instance.url) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.get("/v1/jobs/nope").status_code == 404
        assert client.post("/v1/jobs", json=JOB).status_code == 404

        pg_instance.stop()
        assert_store_unavailable(client.get("/v1/jobs/nope"))
        assert_store_unavailable(client.post("/v1/jobs", json=JOB))
        assert_store_unavailable(client.get("/v1/jobs"))

        pg_instance.start()
        # The same API process, without a restart: its pool replaces the dead connections.
        assert client.get("/v1/jobs/nope").status_code == 404
        assert client.post("/v1/jobs", json=JOB).status_code == 404
        assert client.get("/v1/jobs").status_code == 200
        log = server.output()
    assert "job store unavailable on GET /v1/jobs/nope" in log
    assert "Traceback" not in log


# -- which errors are the store's state, and which are bugs ---------------------------------


def _sqlite_full(tmp: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (b BLOB)"))
    with engine.begin() as conn:
        (pages,) = conn.execute(text("PRAGMA page_count")).one()
        conn.execute(text(f"PRAGMA max_page_count = {pages}"))
        conn.execute(text("INSERT INTO t VALUES (zeroblob(1000000))"))


def _sqlite_locked(tmp: Path) -> None:
    holder = sqlite3.connect(tmp / "locked.db", isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        engine = create_engine(f"sqlite:///{tmp / 'locked.db'}", connect_args={"timeout": 0})
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        holder.close()


def _sqlite_missing_table(tmp: Path) -> None:
    with create_engine(f"sqlite:///{tmp / 'bug.db'}").connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))


def _sqlite_constraint(tmp: Path) -> None:
    with create_engine(f"sqlite:///{tmp / 'bug2.db'}").begin() as conn:
        conn.execute(text("CREATE TABLE t (x PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1), (1)"))


def _pool_exhausted(_: Path) -> None:
    raise sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")


def _disk_full(tmp: Path) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "blob"))


def _a_bug(_: Path) -> None:
    raise RuntimeError("secret internal detail at 0x7f00")


@pytest.fixture
def raising_client(tmp_path: Path) -> Iterator[Callable[[Callable[[Path], None]], httpx.Response]]:
    """GET /raise runs the given function in a route of the real app."""
    app = create_app(make_settings(tmp_path / "data"))
    raiser: list[Callable[[Path], None]] = []

    def route() -> None:
        raiser[0](tmp_path)

    app.add_api_route("/raise", route)
    with TestClient(app, raise_server_exceptions=False) as client:

        def call(fn: Callable[[Path], None]) -> httpx.Response:
            raiser[:] = [fn]
            return client.get("/raise")

        yield call


@pytest.mark.parametrize(
    ("fn", "status", "code"),
    [
        (_sqlite_full, 507, "storage_full"),
        (_disk_full, 507, "storage_full"),
        (_sqlite_locked, 503, "store_unavailable"),
        (_pool_exhausted, 503, "store_unavailable"),
        (_sqlite_missing_table, 500, "internal_error"),
        (_sqlite_constraint, 500, "internal_error"),
        (_a_bug, 500, "internal_error"),
    ],
)
def test_store_errors_are_told_apart(
    raising_client: Callable[[Callable[[Path], None]], httpx.Response],
    fn: Callable[[Path], None],
    status: int,
    code: str,
) -> None:
    response = raising_client(fn)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if status == 503:
        assert response.headers["retry-after"] == "5"
    if status == 507:
        assert "free space" in response.json()["error"]["message"]


def test_a_bug_answers_an_incident_id_that_the_log_repeats(
    raising_client: Callable[[Callable[[Path], None]], httpx.Response],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.errors"):
        response = raising_client(_a_bug)
    error = response.json()["error"]
    match = re.fullmatch(
        r"internal server error \(incident ([0-9a-f]{16})\); the details are in the server log",
        error["message"],
    )
    assert match is not None, error
    assert "0x7f00" not in response.text
    logged = [r for r in caplog.records if match[1] in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "secret internal detail" in caplog.text  # the details: in the log only
