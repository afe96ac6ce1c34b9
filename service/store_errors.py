"""Which database and disk errors are the service's state rather than a bug.

A database that is restarting, unreachable, busy or out of space is the service's state:
the client gets 503 (retry) or 507 (free space), the connection stays usable, and the pool
reconnects by itself once the database is back (PostgreSQL engines pre-ping each connection
they hand out). Anything else from the database (a constraint, a missing table, bad SQL) is
a bug and stays a 500 with an incident (`service.errors`).
"""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
from sqlalchemy import exc as sa_exc

from jobs.disk_space import is_disk_full

STORE_RETRY_AFTER_SECONDS = 5

# SQLite's primary result codes that describe the database file's state, not the query.
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOMEM,
}


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrapper (or `exc` itself)."""
    return getattr(exc, "orig", None) or exc


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None  # extended code -> primary


def is_storage_full(exc: BaseException) -> bool:
    """The data directory's disk (or the database server's) has no space left."""
    orig = _driver_error(exc)
    if isinstance(orig, OSError):
        return is_disk_full(orig)
    return isinstance(orig, psycopg.errors.DiskFull) or (_sqlite_code(orig) == sqlite3.SQLITE_FULL)


def is_store_unavailable(exc: BaseException) -> bool:
    """The job store cannot be reached or is busy now; the same request may succeed later."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # no pooled connection came free in time / a connection went away
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    orig = _driver_error(exc)
    if isinstance(orig, sqlite3.Error):
        # SQLite calls "no such table" and syntax errors OperationalError too: those are bugs.
        return _sqlite_code(orig) in _SQLITE_UNAVAILABLE
    if isinstance(orig, psycopg.Error):
        # Classes 08 (connection), 53 (resources), 57 (shutdown, cannot connect now), 58
        # (system), and connection failures without a SQLSTATE.
        return isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError)
    # Another driver: PEP 249 reserves OperationalError for the database's own condition.
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
