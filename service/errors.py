"""The errors a client can see: one class per HTTP status, the envelope, its OpenAPI entry.

Every error leaves the service as `{"error": {"code": "...", "message": "..."}}`; the message
tells the user what to change. A code that several places answer with has a class of its
own below (`InvalidJob`, `InvalidModel`, `QuotaExceeded`, `StorageFull`), so the code on the
wire is spelled once. Routes raise the classes below (or let `DatasetFileError`
through) and never build error responses themselves; `service.error_handlers` turns these,
and the errors of the layers below (datasets, validation, the job store), into responses.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error the client can act on; subclasses fix the HTTP status."""

    status_code = 400
    default_code = "bad_request"

    def __init__(
        self, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.headers = headers


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status_code = 401
    default_code = "unauthorized"


class NotFound(ServiceError):
    status_code = 404
    default_code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    default_code = "conflict"


class RequestTimeout(ServiceError):
    """The client stopped sending the request body (DEADWEIGHT_BODY_TIMEOUT_SECONDS)."""

    status_code = 408
    default_code = "request_timeout"

    def __init__(self, message: str) -> None:
        # The rest of the body may still arrive; the connection cannot carry another request.
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLarge(ServiceError):
    status_code = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    default_code = "unsupported_media_type"


class Unprocessable(ServiceError):
    status_code = 422
    default_code = "invalid_request"


class InvalidJob(Unprocessable):
    """The job's settings do not fit its data or this server's limits."""

    default_code = "invalid_job"


class InvalidModel(Unprocessable):
    """The model cannot be pruned: its archive was refused, or it failed inspection."""

    default_code = "invalid_model"


class TooManyRequests(ServiceError):
    """A per-tenant limit on work in flight; the client retries after `Retry-After`."""

    status_code = 429
    default_code = "too_many_requests"


class Unavailable(ServiceError):
    status_code = 503
    default_code = "unavailable"


class InsufficientStorage(ServiceError):
    """The tenant's storage quota, or the data directory's free space, is exhausted."""

    status_code = 507
    default_code = "insufficient_storage"


class QuotaExceeded(InsufficientStorage):
    """The tenant stores all its quota allows (DEADWEIGHT_TENANT_STORAGE_BYTES)."""

    default_code = "quota_exceeded"


class StorageFull(InsufficientStorage):
    """The server's disk is full, or would be past its reserve (the data directory or the
    database)."""

    default_code = "storage_full"


def broker_unavailable(exc: Exception) -> Unavailable:
    """The queue refused a message: nothing was stored, so the client can simply retry."""
    log.warning("broker unavailable: %s", exc)
    return Unavailable(
        "the job queue (broker) is unreachable, so nothing was stored; retry in a moment",
        code="broker_unavailable",
    )


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The envelope of every error response (`extra`: more keys beside code and message)."""
    return {"error": {"code": code, "message": message, **extra}}


ERROR_SCHEMA = {
    "description": "Error",
    "content": {
        "application/json": {
            "example": error_body("not_found", "job 5f0c... not found"),
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses."""
    return {status: ERROR_SCHEMA for status in statuses}
