"""Alembic environment for the job store.

`JobStore.migrate()` hands over an open connection (in `config.attributes`), so the
upgrade runs inside the transaction that holds the migration lock. The Alembic command
line (see alembic.ini) gets no connection and connects to the configured database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from jobs.database import create_store_engine, normalize_url
from jobs.settings import get_settings
from jobs.tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or (
        get_settings().resolved_database_url()
    )
    engine = create_store_engine(normalize_url(url))
    try:
        with engine.connect() as fresh:
            _run(fresh)
            fresh.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
_run_online()
