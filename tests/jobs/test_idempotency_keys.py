"""Idempotency keys in the job store, on SQLite and PostgreSQL: one claim per tenant and key
however many requests race for it, completed with the resource, released, expired."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update

from jobs.idempotency import Claim, ClaimLost, Remembered
from jobs.store import JobStore
from jobs.tables import IdempotencyKeyRow, utcnow

DAY = 24 * 3600.0


def _claim(store: JobStore, key: str = "k-1", tenant: str = "acme") -> Claim | Remembered:
    return store.idempotency.claim(tenant, key, "f" * 64, ttl_seconds=DAY, in_flight_seconds=60)


def _age(store: JobStore, key: str, **columns: object) -> None:
    """Move a key's timestamps, as time passing would."""
    with store.database.session() as session:
        session.execute(
            update(IdempotencyKeyRow).where(IdempotencyKeyRow.key == key).values(**columns)
        )


def test_racing_claims_make_one_winner(store: JobStore) -> None:
    start = threading.Barrier(8)
    outcomes: list[Claim | Remembered] = []

    def claim() -> None:
        start.wait()
        outcomes.append(_claim(store))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claims = [o for o in outcomes if isinstance(o, Claim)]
    assert len(outcomes) == 8 and len(claims) == 1
    assert all(o.in_flight for o in outcomes if isinstance(o, Remembered))


def test_a_claim_completes_with_its_resource_and_is_remembered(store: JobStore) -> None:
    claim = _claim(store)
    assert isinstance(claim, Claim)
    job = store.jobs.add(
        "acme", "m" * 32, "d" * 32, None, {}, claim=replace(claim, status_code=202)
    )
    remembered = _claim(store)
    assert isinstance(remembered, Remembered) and not remembered.in_flight
    assert (remembered.resource_kind, remembered.resource_id) == ("job", job.id)
    assert (remembered.status_code, remembered.fingerprint) == (202, "f" * 64)
    # Keys are per tenant.
    assert isinstance(_claim(store, tenant="other"), Claim)


def test_a_released_claim_can_be_claimed_again(store: JobStore) -> None:
    claim = _claim(store)
    assert isinstance(claim, Claim)
    assert store.idempotency.release(claim)
    assert isinstance(_claim(store), Claim)


def test_a_lost_claim_writes_nothing(store: JobStore) -> None:
    claim = _claim(store)
    assert isinstance(claim, Claim)
    store.idempotency.release(claim)
    with pytest.raises(ClaimLost):
        store.models.add("acme", "a" * 64, 3, "m.pt2", claim=claim)
    assert store.models.list("acme", 10, 0) == ([], 0)


def test_expired_and_abandoned_keys_are_replaced(store: JobStore) -> None:
    first = _claim(store)
    assert isinstance(first, Claim)
    store.jobs.add("acme", "m" * 32, "d" * 32, None, {}, claim=first)
    _age(store, "k-1", expires_at=utcnow() - timedelta(seconds=1))
    assert store.idempotency.get("acme", "k-1") is None
    second = _claim(store)
    assert isinstance(second, Claim) and second.token != first.token
    # Still in flight, but older than in_flight_seconds: its API process died.
    _age(store, "k-1", created_at=utcnow() - timedelta(seconds=61))
    third = _claim(store)
    assert isinstance(third, Claim) and third.token != second.token
