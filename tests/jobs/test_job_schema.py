"""Migrations: idempotent, concurrent-safe, and in step with jobs.tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from jobs.database import normalize_url
from jobs.store import JobStore
from jobs.tables import Base

REPO = Path(__file__).resolve().parents[2]


def _version(url: str) -> str | None:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_migrate_twice_is_idempotent(database_url: str) -> None:
    store = JobStore(database_url)
    try:
        store.migrate()
        job = store.jobs.add("acme", "m" * 32, "d" * 32, None, {})
        store.migrate()
        assert store.jobs.get("acme", job.id) == job, "a second migrate keeps the data"
        assert _version(database_url) == "0003"
    finally:
        store.dispose()


def test_migration_matches_the_tables_module(store: JobStore, database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert diff == [], "jobs/tables.py changed without a new migration"
    assert {"models", "datasets", "jobs", "alembic_version"} <= tables


def test_concurrent_migrations_do_not_crash(database_url: str) -> None:
    # The API and workers starting together all upgrade a fresh database: separate
    # processes, released at the same instant, as in production.
    start_at = time.time() + 3
    code = (
        "import sys, time; from jobs.store import JobStore; "
        "store = JobStore(sys.argv[1]); time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
        "store.migrate()"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url, str(start_at)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, "\n".join(errors)
    assert _version(database_url) == "0003"


def test_migrate_from_another_directory(tmp_path: Path) -> None:
    # The Alembic scripts are found from the package, not from the working directory.
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code = f"from jobs.store import JobStore; JobStore({url!r}).migrate()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=60)
    assert _version(url) == "0003"


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
