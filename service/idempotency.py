"""The `Idempotency-Key` header of `POST /v1/jobs`, `/v1/models` and `/v1/datasets`.

A client that timed out cannot tell whether its request was served; sent again with the same
key, the request answers with what the first one created (its current record, the first
answer's status code, and `Idempotent-Replayed: true`) instead of creating it twice. Keys are
per tenant and are remembered for `DEADWEIGHT_IDEMPOTENCY_TTL_SECONDS` (24 h by default).

- same key, same request: the original resource; same key, another request: 422
  `idempotency_key_reused`; while the first request is still being served: 409
  `idempotency_key_in_use` with `Retry-After`;
- a request is its route and its JSON body (as validated, so `true` and `"mean"` are the same
  `compensate`), or, for an upload, its route, the file's sha256 and its form fields: the file
  is compared after it has streamed to disk, never held in memory;
- only a request that created something is remembered: one refused (4xx) or failed (5xx)
  releases its key, so the corrected request may be sent again under the same key.

The store's side (the claim, its unique constraint, expiry) is `jobs.idempotency`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Header, Response

from jobs.idempotency import Claim, Remembered
from jobs.settings import Settings
from jobs.store import JobStore
from service.errors import Conflict, NotFound, Unprocessable

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Visible ASCII: UUIDs, ULIDs and base64 tokens fit; spaces and control characters (which
# proxies rewrite or drop) do not.
_KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
# A claim older than this whose request never finished belongs to an API process that died
# (an upload of the largest file over a slow link still finishes well within it).
IN_FLIGHT_SECONDS = 3600
# Retry-After of 409 idempotency_key_in_use: a submission is served in milliseconds, an
# upload in seconds to hours.
JOB_IN_USE_RETRY_AFTER = 1
UPLOAD_IN_USE_RETRY_AFTER = 5

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_KEY,
        description="any unique string (e.g. a UUID), 1-255 visible ASCII characters: a "
        "retry with the same key and request answers with what the first request created "
        f"(header `{REPLAYED}: true`) instead of creating it again; remembered per tenant for "
        "DEADWEIGHT_IDEMPOTENCY_TTL_SECONDS (24 h)",
    ),
]


def replayable(status: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a route's success that a retry may replay."""
    header = {
        "description": "true when this answers a retry: what the first request with this "
        f"{IDEMPOTENCY_KEY} created, with that request's status code",
        "schema": {"type": "string", "enum": ["true"]},
    }
    return {status: {"headers": {REPLAYED: header}}}


class InvalidIdempotencyKey(Unprocessable):
    default_code = "invalid_idempotency_key"


class IdempotencyKeyReused(Unprocessable):
    """The key was used for a different request; a new request needs a new key."""

    default_code = "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    """The first request with this key is still being served."""

    default_code = "idempotency_key_in_use"

    def __init__(self, key: str, retry_after: int) -> None:
        super().__init__(
            f"a request with {IDEMPOTENCY_KEY} {key!r} is still being served; retry in "
            f"{retry_after} s (Retry-After) to get its outcome",
            headers={"Retry-After": str(retry_after)},
        )


def checked_key(key: str) -> str:
    """The header's value if it is a valid key.

    Raises:
        InvalidIdempotencyKey: empty, too long, or not visible ASCII.
    """
    if not _KEY_RE.fullmatch(key):
        raise InvalidIdempotencyKey(
            f"the {IDEMPOTENCY_KEY} header must be 1 to {MAX_KEY_LENGTH} visible ASCII "
            f"characters (no spaces), e.g. a UUID; got {len(key)} characters"
        )
    return key


def fingerprint(route: str, request: Mapping[str, Any]) -> str:
    """A digest of what the request asks for, independent of key order and spacing."""
    canonical = json.dumps(
        {"route": route, "request": request}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def upload_fingerprint(route: str, file_sha256: str, fields: Mapping[str, str]) -> str:
    """An upload's digest: its route, its file's sha256 and its form fields."""
    return fingerprint(route, {"file_sha256": file_sha256, "fields": dict(fields)})


def begin(
    store: JobStore,
    settings: Settings,
    tenant: str,
    key: str | None,
    request_fingerprint: str | None,
    retry_after: int,
) -> Claim | Remembered | None:
    """Claim the request's key: None without a key, the `Claim` of a first request, or the
    finished earlier request to replay (after `check_same`, for an upload).

    Raises:
        InvalidIdempotencyKey, IdempotencyKeyInUse, IdempotencyKeyReused
    """
    if key is None:
        return None
    outcome = store.idempotency.claim(
        tenant,
        checked_key(key),
        request_fingerprint,
        ttl_seconds=settings.idempotency_ttl_seconds,
        in_flight_seconds=IN_FLIGHT_SECONDS,
    )
    if isinstance(outcome, Remembered):
        if outcome.in_flight:
            raise IdempotencyKeyInUse(key, retry_after)
        if request_fingerprint is not None:
            check_same(key, outcome, request_fingerprint)
    return outcome


def check_same(key: str, remembered: Remembered, request_fingerprint: str) -> None:
    """Raise `IdempotencyKeyReused` unless the request is the one the key was used for."""
    if remembered.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            f"the {IDEMPOTENCY_KEY} {key!r} was used {remembered.created_at:%Y-%m-%d %H:%M:%S} "
            f"UTC for a different request (another body, file or form field); send a new "
            "key with each new request, and the same key only to retry the same request"
        )


def replayed_id(key: str, remembered: Remembered, kind: str) -> str:
    """The ID of what the earlier request created; sets nothing."""
    if remembered.resource_kind != kind or remembered.resource_id is None:
        # Keys are per tenant and each route fingerprints itself, so this is another
        # route's key: the same as a different request.
        raise IdempotencyKeyReused(
            f"the {IDEMPOTENCY_KEY} {key!r} was used for a request to another endpoint; "
            "send a new key with each new request"
        )
    return remembered.resource_id


def gone(kind: str, resource_id: str) -> NotFound:
    """The resource an earlier request created has been deleted since."""
    return NotFound(
        f"{kind} {resource_id!r}, created by an earlier request with this "
        f"{IDEMPOTENCY_KEY}, has been deleted; send a new key to create it again"
    )


def mark_replayed(response: Response, remembered: Remembered) -> None:
    """The first answer's status code, and the header that says this is a replay."""
    response.status_code = remembered.status_code or response.status_code
    response.headers[REPLAYED] = "true"


def release(store: JobStore, claim: Claim | None) -> None:
    """Forget the key of a request that failed, so that it may be retried under it."""
    if claim is not None:
        store.idempotency.release(claim)
