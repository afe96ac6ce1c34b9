"""Who still needs a blob: records, and uploads still being validated (holds).

Blobs are content-addressed and shared between records and tenants, so deleting one record
must remove the file only when nothing else refers to it, and an upload of the same bytes
arriving meanwhile must never lose its file. Both sides therefore write the blob's lock row
first (`_lock`), which serialises them: a row lock on PostgreSQL, SQLite's write lock.
An upload takes its hold before its file is moved into place, and a release checks the
references and unlinks inside the same transaction, so the two can never interleave. The
record that replaces a hold drops it in the transaction that writes the record (`drop_hold`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, CursorResult, delete, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from jobs.database import Database
from jobs.tables import BlobLockRow, DatasetRow, ModelRow, UploadHoldRow, utcnow

Unlink = Callable[[str], None]
# Hashes per IN (...) query: well under every backend's limit on bound parameters.
_IN_BATCH = 500


class HoldLost(RuntimeError):
    """An upload's hold was released before its record replaced it (it waited longer than
    `Settings.leftover_seconds`); its blob may be gone, so the upload must be sent again."""


class BlobReferences:
    """Holds of uploads being validated, and the releases that unlink a blob nobody uses."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def hold_upload(self, tenant: str, sha256: str, size: int) -> str:
        """Keep this blob for an upload being validated; returns the hold's ID.

        Take it before the file is moved into the blob store: from then on no release can
        remove the file, whoever else refers to the same bytes.
        """
        with self._db.session() as session:
            self._lock(session, sha256)
            row = UploadHoldRow(tenant=tenant, sha256=sha256, size=size)
            session.add(row)
            session.flush()
            return row.id

    def release_hold(self, hold_id: str, unlink: Unlink) -> None:
        """Drop an upload's hold (refused, failed or abandoned); unlink the blob if unused."""
        with self._db.session() as session:
            sha256 = session.scalar(select(UploadHoldRow.sha256).where(UploadHoldRow.id == hold_id))
            if sha256 is None:
                return  # already released, or replaced by its record
            self._lock(session, sha256)
            session.execute(delete(UploadHoldRow).where(UploadHoldRow.id == hold_id))
            self._unlink_if_unused(session, sha256, unlink)

    def release_blob(self, sha256: str, unlink: Unlink) -> bool:
        """After a record was deleted: unlink the blob unless something still refers to it."""
        with self._db.session() as session:
            self._lock(session, sha256)
            return self._unlink_if_unused(session, sha256, unlink)

    def blob_in_use(self, sha256: str) -> bool:
        """True while a model, a dataset or an upload being validated refers to this blob."""
        with self._db.session() as session:
            return bool(session.scalar(select(_referenced(sha256))))

    def unreferenced(self, sha256s: list[str]) -> list[str]:
        """Those of these blobs that nothing refers to now (a cheap read; release_blob
        checks again under the lock before unlinking)."""
        used: set[str] = set()
        with self._db.session() as session:
            for start in range(0, len(sha256s), _IN_BATCH):
                batch = sha256s[start : start + _IN_BATCH]
                for row in (ModelRow, DatasetRow, UploadHoldRow):
                    used.update(session.scalars(select(row.sha256).where(row.sha256.in_(batch))))
        return [sha for sha in sha256s if sha not in used]

    def stale_holds(self, older_than_seconds: float) -> list[str]:
        """Holds older than any validation can take: their API process died mid-upload."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        query = select(UploadHoldRow.id).where(UploadHoldRow.created_at < cutoff)
        with self._db.session() as session:
            return list(session.scalars(query).all())

    def _unlink_if_unused(self, session: Session, sha256: str, unlink: Unlink) -> bool:
        if session.scalar(select(_referenced(sha256))):
            return False
        # Inside the transaction that holds the lock: nobody can take a hold in between.
        unlink(sha256)
        session.execute(delete(BlobLockRow).where(BlobLockRow.sha256 == sha256))
        return True

    def _lock(self, session: Session, sha256: str) -> None:
        """Write the blob's lock row; the transaction then owns the blob until it ends."""
        now = utcnow()
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(BlobLockRow).values(sha256=sha256, touched_at=now)
        session.execute(
            statement.on_conflict_do_update(index_elements=["sha256"], set_={"touched_at": now})
        )


def drop_hold(session: Session, hold_id: str | None) -> None:
    """The record now refers to the blob: the hold that kept it during validation goes.

    Raises:
        HoldLost: the hold was released meanwhile (the reaper took it for a dead upload's),
            so the blob may be gone: the record is not written.
    """
    if hold_id is None:
        return
    result = session.execute(delete(UploadHoldRow).where(UploadHoldRow.id == hold_id))
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise HoldLost(hold_id)


def _referenced(sha256: str) -> ColumnElement[bool]:
    return or_(
        exists().where(ModelRow.sha256 == sha256),
        exists().where(DatasetRow.sha256 == sha256),
        exists().where(UploadHoldRow.sha256 == sha256),
    )
