"""Idempotency keys: a request that carries one creates its resource at most once per tenant.

The first request with a key *claims* it by inserting a row whose primary key is (tenant,
key): a second request racing it fails that INSERT on the database's constraint, never on a
check-then-insert that both could pass. The claim is completed in the same transaction that
writes the resource (`complete_claim`, called by the model, dataset and job tables), so a
crash can never leave a resource without its key or a key naming nothing. A request that
fails releases its claim, so the client may retry under the same key.

A claim still in flight after `in_flight_seconds` belongs to an API process that died, and an
expired key (past its `expires_at`) is forgotten: either is replaced by the next claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.database import Database
from jobs.tables import IdempotencyKeyRow, new_id, utcnow

# A claim can be lost between a failed INSERT and the read that follows (the other request
# failed and released it): claiming is tried again, this many times in all.
_CLAIM_TRIES = 3


@dataclass(frozen=True)
class Claim:
    """This request holds the key; `token` fences its completion and release.

    `fingerprint` and `status_code` are what completion records: the request's digest (for
    an upload, known once its file has arrived) and the status its first answer had.
    """

    tenant: str
    key: str
    token: str
    fingerprint: str | None = None
    status_code: int = 201


@dataclass(frozen=True)
class Remembered:
    """An earlier request holds the key: in flight (`status_code` None) or finished."""

    fingerprint: str | None
    status_code: int | None
    resource_kind: str | None
    resource_id: str | None
    created_at: datetime
    expires_at: datetime

    @property
    def in_flight(self) -> bool:
        return self.status_code is None


class ClaimLost(RuntimeError):
    """The claim was taken over (its request outlived `in_flight_seconds`) or released before
    the resource was written; the write is rolled back."""


def complete_claim(
    session: Session, claim: Claim | None, resource_kind: str, resource_id: str
) -> None:
    """Record, inside the transaction that writes the resource, what the claim created.

    Raises:
        ClaimLost: the claim is no longer this request's (the transaction must roll back).
    """
    if claim is None:
        return
    statement = (
        update(IdempotencyKeyRow)
        .where(
            IdempotencyKeyRow.tenant == claim.tenant,
            IdempotencyKeyRow.key == claim.key,
            IdempotencyKeyRow.claim_token == claim.token,
        )
        .values(
            fingerprint=claim.fingerprint,
            status_code=claim.status_code,
            resource_kind=resource_kind,
            resource_id=resource_id,
        )
        .execution_options(synchronize_session=False)
    )
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # always, for DML; narrows for rowcount
    if result.rowcount == 0:
        raise ClaimLost(f"idempotency key {claim.key!r} was claimed by another request")


class IdempotencyKeys:
    """Idempotency keys: claim (expired keys are purged on the way), read, release."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def claim(
        self,
        tenant: str,
        key: str,
        fingerprint: str | None,
        ttl_seconds: float,
        in_flight_seconds: float,
    ) -> Claim | Remembered:
        """Claim `key` for a new request, or say what the earlier request holding it is.

        `fingerprint` (None for an upload whose file has not arrived) is stored for the
        comparison a later request makes; completion stores the final one.
        """
        for _ in range(_CLAIM_TRIES):
            claim = self._try_insert(tenant, key, fingerprint, ttl_seconds, in_flight_seconds)
            if claim is not None:
                return claim
            remembered = self.get(tenant, key)
            if remembered is not None:
                return remembered
        # Claimed and released again under us each time: as busy as a request in flight.
        now = utcnow()
        return Remembered(None, None, None, None, now, now)

    def _try_insert(
        self,
        tenant: str,
        key: str,
        fingerprint: str | None,
        ttl_seconds: float,
        in_flight_seconds: float,
    ) -> Claim | None:
        now = utcnow()
        row = IdempotencyKeyRow(
            tenant=tenant,
            key=key,
            claim_token=new_id(),
            fingerprint=fingerprint,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
        forgotten = or_(
            IdempotencyKeyRow.expires_at < now,
            and_(
                IdempotencyKeyRow.status_code.is_(None),
                IdempotencyKeyRow.created_at < now - timedelta(seconds=in_flight_seconds),
            ),
        )
        try:
            with self._db.session() as session:
                # Every expired key goes (by the index on expires_at), and this key if its
                # request died; in the same transaction as the claim that replaces it.
                self._db.change(
                    session, delete(IdempotencyKeyRow).where(IdempotencyKeyRow.expires_at < now)
                )
                self._db.change(
                    session,
                    delete(IdempotencyKeyRow).where(
                        IdempotencyKeyRow.tenant == tenant,
                        IdempotencyKeyRow.key == key,
                        forgotten,
                    ),
                )
                session.add(row)
                session.flush()
        except IntegrityError:
            return None
        return Claim(tenant, key, row.claim_token, fingerprint)

    def get(self, tenant: str, key: str) -> Remembered | None:
        """The key's row, unless it has expired."""
        query = select(IdempotencyKeyRow).where(
            IdempotencyKeyRow.tenant == tenant,
            IdempotencyKeyRow.key == key,
            IdempotencyKeyRow.expires_at >= utcnow(),
        )
        with self._db.session() as session:
            row = session.scalars(query).one_or_none()
            if row is None:
                return None
            return Remembered(
                fingerprint=row.fingerprint,
                status_code=row.status_code,
                resource_kind=row.resource_kind,
                resource_id=row.resource_id,
                created_at=row.created_at,
                expires_at=row.expires_at,
            )

    def release(self, claim: Claim) -> bool:
        """Forget a claim whose request failed, or whose resource was withdrawn."""
        statement = delete(IdempotencyKeyRow).where(
            IdempotencyKeyRow.tenant == claim.tenant,
            IdempotencyKeyRow.key == claim.key,
            IdempotencyKeyRow.claim_token == claim.token,
        )
        return self._db.delete(statement)
