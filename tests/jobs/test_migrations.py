"""Migrations: idempotent, concurrent-safe, and in step with jobs.tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from jobs.database import MIGRATIONS_DIR, normalize_url
from jobs.store import JobStore
from jobs.tables import Base

REPO = Path(__file__).resolve().parents[2]
# The newest revision, from the scripts themselves: every new migration would edit it here.
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


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
        assert _version(database_url) == HEAD
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
    assert _version(database_url) == HEAD


def test_migrate_from_another_directory(tmp_path: Path) -> None:
    # The Alembic scripts are found from the package, not from the working directory.
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code = f"from jobs.store import JobStore; JobStore({url!r}).migrate()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=60)
    assert _version(url) == HEAD
