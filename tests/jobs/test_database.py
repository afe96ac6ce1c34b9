"""The store's database (jobs/database.py): SQLite's WAL mode, data folder and sharing
between processes, and the errors that mean the database is out of reach."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from jobs.database import STORE_OUTAGE
from jobs.store import JobStore


def test_sqlite_runs_in_wal_mode(sqlite_url: str, tmp_path: Path) -> None:
    store = JobStore(sqlite_url)
    try:
        store.migrate()
        engine = create_engine(sqlite_url)
        with engine.connect() as connection:
            mode = connection.execute(text("PRAGMA journal_mode")).scalar()
        engine.dispose()
        assert mode == "wal"
    finally:
        store.dispose()


def test_sqlite_creates_the_data_folder(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'jobs.db'}")
    try:
        store.migrate()
        store.ping()
    finally:
        store.dispose()


def test_two_stores_share_one_sqlite_file(sqlite_url: str) -> None:
    api, worker = JobStore(sqlite_url), JobStore(sqlite_url)
    try:
        api.migrate()
        job = api.jobs.add("acme", "m" * 32, "d" * 32, None, {})
        assert worker.lifecycle.start(job.id) is not None
        seen = api.jobs.get("acme", job.id)
        assert seen is not None and seen.status == "running"
    finally:
        api.dispose()
        worker.dispose()


@pytest.mark.postgres
def test_postgres_ping_fails_fast_when_unreachable() -> None:
    store = JobStore("postgresql://postgres@127.0.0.1:1/test")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            store.ping()
    finally:
        store.dispose()
    assert time.monotonic() - started < 10


def test_an_unreachable_database_is_a_store_outage() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = JobStore(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    try:
        with pytest.raises(STORE_OUTAGE):
            gone.lifecycle.is_cancel_requested("a" * 32, 1)
        with pytest.raises(STORE_OUTAGE):
            gone.lifecycle.renew_lease("a" * 32, 1, 60)
    finally:
        gone.dispose()
