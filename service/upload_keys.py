"""Uploads under an `Idempotency-Key` (see `service.idempotency`).

The key is claimed before the file streams, so a retry that meets the first upload still in
flight is answered 409 at once, without sending gigabytes for nothing. A retry of a finished
upload cannot be judged before its file has arrived: the file streams to disk (hashed on the
way, never held in memory), is compared by sha256 with the first one's, and is dropped again;
the answer is then the first upload's record, or 422 when the file or form differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio
from fastapi import Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from jobs.idempotency import Claim, ClaimLost, Remembered
from service import idempotency
from service.idempotency import UPLOAD_IN_USE_RETRY_AFTER
from service.upload_cleanup import release_upload
from service.uploads import Upload, UploadTarget, discard_local_copy, receive_upload


async def begin_upload(
    target: UploadTarget, key: str | None, kind: str
) -> Claim | Remembered | None:
    """Claim the key before the file streams (see `service.idempotency.begin`).

    Raises:
        IdempotencyKeyReused: the key created something else than a `kind` (at once, before
            the file is sent).
    """
    outcome = await run_in_threadpool(
        idempotency.begin,
        target.store,
        target.settings,
        target.tenant,
        key,
        None,  # the file decides, once it has arrived
        UPLOAD_IN_USE_RETRY_AFTER,
    )
    if isinstance(outcome, Remembered):
        idempotency.replayed_id(key or "", outcome, kind)
    return outcome


async def replayed_upload(
    request: Request,
    target: UploadTarget,
    response: Response,
    key: str,
    remembered: Remembered,
    kind: str,
    text_fields: frozenset[str] = frozenset(),
) -> str:
    """Receive a retried upload, check it is the first one, drop it; the first one's ID."""
    upload = await receive_upload(request, target, text_fields)
    await discard_local_copy(target, upload)
    # The first upload's record keeps its own hold on the same bytes.
    await run_in_threadpool(release_upload, target.store, target.blobs, upload)
    idempotency.check_same(key, remembered, _fingerprint(request, upload))
    idempotency.mark_replayed(response, remembered)
    return idempotency.replayed_id(key, remembered, kind)


def completing(claim: Claim | None, request: Request, upload: Upload) -> Claim | None:
    """The claim as its record will complete it: this upload's digest, 201."""
    if claim is None:
        return None
    return replace(claim, fingerprint=_fingerprint(request, upload), status_code=201)


@asynccontextmanager
async def keyed(target: UploadTarget, claim: Claim | None, key: str | None) -> AsyncIterator[None]:
    """Release the claim if the upload fails (it may be retried under the same key)."""
    try:
        yield
    except ClaimLost:
        raise idempotency.IdempotencyKeyInUse(key or "", UPLOAD_IN_USE_RETRY_AFTER) from None
    except BaseException:
        # Shielded: a client that went away cancels the request, and the key must still be
        # released for its retry (else it would wait for IN_FLIGHT_SECONDS).
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(idempotency.release, target.store, claim)
        raise


def _fingerprint(request: Request, upload: Upload) -> str:
    route = f"{request.method} {request.url.path}"
    return idempotency.upload_fingerprint(route, upload.sha256, upload.fields)
