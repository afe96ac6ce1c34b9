"""The store's connection and transaction helpers, shared by its parts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import CursorResult, Delete, Update, text
from sqlalchemy.orm import Session, sessionmaker

from jobs.database import create_store_engine, normalize_url, upgrade_to_head


class StoreBase:
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
    def _session(self) -> Iterator[Session]:
        """One short transaction: committed on success, rolled back on any exception."""
        with self._sessions.begin() as session:
            yield session

    def _change(self, session: Session, statement: Update | Delete) -> bool:
        """Run a conditional UPDATE or DELETE; True when it matched a row."""
        result = session.execute(statement.execution_options(synchronize_session=False))
        # Always a CursorResult for DML; the isinstance narrows the type for rowcount.
        assert isinstance(result, CursorResult)
        return result.rowcount > 0

    def _delete(self, statement: Delete) -> bool:
        with self._session() as session:
            return self._change(session, statement)
