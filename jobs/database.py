"""The job store's database: its engine, the sessions its parts share, and the Alembic
upgrade run at every start.

SQLite is shared by several processes (the API and its embedded worker), PostgreSQL by
several machines; the settings below are what makes each safe for that.

`STORE_OUTAGE` names the errors that mean "the database could not be reached or answered
with a transient failure" (a restart, a dropped connection, SQLite busy or full): a worker
retries those, it never abandons its attempt over them.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    CursorResult,
    Delete,
    Engine,
    Update,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant works, as long as every Deadweight process uses the same one.
_PG_MIGRATION_LOCK = 0x64656164  # "dead"

# Alembic keeps the running migration in module globals: one upgrade per process at a time.
_ALEMBIC_LOCK = threading.Lock()

# A writer waits this long for another process's write to finish before giving up.
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite connections kept per process, and opened beyond them at most: together the 40
# threads of the API's thread pool (anyio's default), so no request waits for a connection.
_SQLITE_POOLED = 16
_SQLITE_OVERFLOW = 24

# Transient store failures: the server is restarting or unreachable, a connection dropped,
# SQLite is locked or its disk full. Constraint violations and bugs are not among them.
STORE_OUTAGE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class Database:
    """One connection pool and the transaction helpers every part of the job store uses."""

    def __init__(self, database_url: str) -> None:
        """Connect (SQLite file or PostgreSQL URL); does not create tables."""
        self._engine = create_store_engine(normalize_url(database_url))
        # Records are copied out before the session closes, so nothing needs reloading.
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent, safe at every start)."""
        upgrade_to_head(self._engine)

    def ping(self) -> None:
        """Raise if the database cannot be reached (used by /readyz)."""
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close the pooled connections (at shutdown, or in tests between databases)."""
        self._engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One short transaction: committed on success, rolled back on any exception."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A pooled connection for reads in SQLAlchemy Core, without an ORM session.

        A session, its identity map and the ORM's loading cost several times the query on
        the routes clients poll; a Core SELECT of the columns a record needs does not.
        Nothing is committed: the connection is rolled back when it returns to the pool.
        """
        with self._engine.connect() as connection:
            yield connection

    def change(self, session: Session, statement: Update | Delete) -> bool:
        """Run a conditional UPDATE or DELETE; True when it matched a row."""
        result = session.execute(statement.execution_options(synchronize_session=False))
        # Always a CursorResult for DML; the isinstance narrows the type for rowcount.
        assert isinstance(result, CursorResult)
        return result.rowcount > 0

    def delete(self, statement: Delete) -> bool:
        """A conditional DELETE in a transaction of its own; True when it matched a row."""
        with self.session() as session:
            return self.change(session, statement)


def normalize_url(url: str) -> URL:
    """Parse a database URL; plain `postgresql://` and `postgres://` select psycopg 3.

    SQLAlchemy's default PostgreSQL driver is psycopg2, which is not installed; users and
    platforms commonly hand out driverless URLs.
    """
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def create_store_engine(url: URL) -> Engine:
    """The engine the store uses: WAL and a busy timeout on SQLite, pre-ping on PostgreSQL."""
    if is_sqlite(url):
        _make_sqlite_parent(url)
        engine = create_engine(url, **_sqlite_pool(url))
        event.listen(engine, "connect", _sqlite_on_connect)
    else:
        # pre-ping: a worker idles for hours between jobs, and servers drop idle connections.
        # connect_timeout: /readyz must answer even when the server is unreachable.
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    # A Celery worker forks a child per job: pooled connections inherited from the parent
    # must not be shared with it (two processes on one socket corrupt the protocol).
    os.register_at_fork(after_in_child=functools.partial(_forget_pool, weakref.ref(engine)))
    return engine


def _sqlite_pool(url: URL) -> dict[str, int]:
    """Pool sizes for an SQLite file: as many pooled connections as clients commonly poll at
    once, and room for every thread of the API's pool.

    SQLAlchemy's default (5, and 10 more closed on return) made a burst of 16 polls open and
    close connections all the time: each opening costs about a millisecond (the pragmas
    below, and SQLite parsing the schema on the first statement), and the 16th read waited
    for a free connection. An SQLite connection is only a few open files here.
    """
    dialect: Any = url.get_dialect()  # get_pool_class: SQLAlchemy's choice, not typed
    if not issubclass(dialect.get_pool_class(url), QueuePool):
        return {}  # an in-memory database: one connection per thread, no sizes to give
    return {"pool_size": _SQLITE_POOLED, "max_overflow": _SQLITE_OVERFLOW}


def _forget_pool(ref: weakref.ref[Engine]) -> None:
    engine = ref()
    if engine is not None:
        engine.dispose(close=False)


def _make_sqlite_parent(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers (API polling) do not block the writer (worker progress) or vice versa.
        _enable_wal(cursor)
        # Durable at every checkpoint; in WAL mode NORMAL cannot corrupt the database.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch a database file to WAL once; the mode is stored in the file.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy handler, while another process holds a write lock (API and worker
    starting together). So the mode is read first and the switch retried for a while.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def upgrade_to_head(engine: Engine) -> None:
    """Run `alembic upgrade head` on this engine's database; safe to call concurrently."""
    with _ALEMBIC_LOCK, _migration_connection(engine) as connection:
        config = Config()
        # ConfigParser interpolates '%'; a path containing one must be escaped.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        # Handing over the connection (not the URL) keeps the lock and the upgrade together.
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that no other process's migration runs beside.

    Both backends have transactional DDL, so a migration either lands whole or not at all,
    and the second process to arrive finds the schema at head and does nothing.
    """
    if is_sqlite(engine.url):
        # BEGIN IMMEDIATE takes SQLite's write lock up front; the other process waits on it
        # (busy timeout) instead of failing half-way with "table already exists".
        immediate = create_engine(engine.url)
        event.listen(immediate, "connect", _sqlite_on_connect)
        event.listen(immediate, "connect", _sqlite_driver_autocommit)
        event.listen(immediate, "begin", _sqlite_begin_immediate)
        try:
            with immediate.begin() as connection:
                yield connection
        finally:
            immediate.dispose()
    else:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Released at commit. Without it, two processes creating the same tables at
                # once fail on PostgreSQL's catalog unique index.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            yield connection


def _sqlite_driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    # Stop Python's sqlite3 module from issuing its own BEGIN, so ours is the only one.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
