"""Domain errors and their HTTP form, in one place.

Every error leaves the service as `{"error": {"code": "...", "message": "..."}}`; the message
tells the user what to change. Routes raise the classes below (or let `InvalidDataset` through)
and never build error responses themselves.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs.blob_refs import HoldLost
from jobs.datasets import InvalidDataset
from jobs.validation import ValidationBusy, ValidationUnavailable
from service.store_errors import STORE_RETRY_AFTER_SECONDS, is_storage_full, is_store_unavailable

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


def broker_unavailable(exc: Exception) -> Unavailable:
    """The queue refused a message: nothing was stored, so the client can simply retry."""
    log.warning("broker unavailable: %s", exc)
    return Unavailable(
        "the job queue (broker) is unreachable, so nothing was stored; retry in a moment",
        code="broker_unavailable",
    )


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    507: "insufficient_storage",
}


def _field_name(loc: Sequence[int | str]) -> str:
    # ("body", "thresholds", 0, "fraction") -> "thresholds[0].fraction"; the "body" prefix
    # says nothing to a user who sent one JSON object.
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def describe_validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic's error list as plain `{"field", "message"}` pairs."""
    out = []
    for err in errors:
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            out.append({"field": "body", "message": f"the body is not valid JSON ({message})"})
            continue
        out.append({"field": _field_name(err.get("loc", ())), "message": message})
    return out


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers
    )


async def _invalid_dataset(_: Request, exc: InvalidDataset) -> JSONResponse:
    return JSONResponse(error_body("invalid_dataset", str(exc)), status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = str(exc.detail)
    # The router's own 404/405 say only "Not Found"; name what was asked for instead.
    if exc.status_code == 404 and message == "Not Found":
        message = f"no endpoint {request.url.path}; the API is described at /docs"
    elif exc.status_code == 405 and message == "Method Not Allowed":
        message = f"{request.method} is not allowed on {request.url.path}"
    return JSONResponse(
        error_body(code, message),
        status_code=exc.status_code,
        headers=exc.headers,
    )


# Errors reported for one request: enough to fix a body, and a reply that stays small
# whatever the body holds.
MAX_REPORTED_ERRORS = 20


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    details = describe_validation_errors(errors[:MAX_REPORTED_ERRORS])
    message = "invalid request: " + "; ".join(f"{d['field']}: {d['message']}" for d in details)
    if len(errors) > MAX_REPORTED_ERRORS:
        message += f"; and {len(errors) - MAX_REPORTED_ERRORS} more errors"
    return JSONResponse(error_body("invalid_request", message, details=details), status_code=422)


async def _hold_lost(_: Request, exc: HoldLost) -> JSONResponse:
    log.warning("upload hold %s was released before its record was written", exc)
    return JSONResponse(
        error_body(
            "upload_expired",
            "the upload waited too long to be checked and was discarded; send it again",
        ),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _validation_unavailable(_: Request, exc: ValidationUnavailable) -> JSONResponse:
    # The file was not judged: no slot came free in time, or a validation process could
    # not start (the server's fault, whose details stay in the log).
    if isinstance(exc, ValidationBusy):
        code, message, retry = "validation_busy", str(exc), "30"
    else:
        log.error("upload validation unavailable: %s", exc)
        code, retry = "validation_unavailable", "5"
        message = (
            "the server could not start the process that checks uploads; nothing was "
            "stored, retry in a moment"
        )
    return JSONResponse(error_body(code, message), status_code=503, headers={"Retry-After": retry})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log only: it can name files, settings and internals. The
    # incident ID ties the user's report to it.
    incident = uuid.uuid4().hex[:16]
    log.error(
        "incident %s: unhandled error on %s %s",
        incident,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    message = f"internal server error (incident {incident}); the details are in the server log"
    return JSONResponse(error_body("internal_error", message), status_code=500)


# -- The job store's outages (classified in service.store_errors): 507 when full, 503 while
# unreachable or busy, anything else from the database a bug (500 with an incident).


def _storage_full(request: Request, exc: Exception) -> JSONResponse:
    log.error("storage full on %s %s: %s", request.method, request.url.path, exc)
    message = (
        "the server's disk is full, so this request could not be stored; free space by "
        "deleting jobs, models or datasets you no longer need (DELETE /v1/jobs/{id}, "
        "/v1/models/{id}, /v1/datasets/{id}), or ask the operator to grow the disk"
    )
    return JSONResponse(error_body("storage_full", message), status_code=507)


def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # One line: an outage repeats on every request, and its cause is in the exception text.
    log.warning(
        "job store unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    message = (
        "the job store (database) is unreachable or busy, so this request could not be "
        f"completed; retry in {STORE_RETRY_AFTER_SECONDS} seconds (Retry-After)"
    )
    return JSONResponse(
        error_body("store_unavailable", message),
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
    )


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """Database and disk errors: 507 when full, 503 while unreachable, else a bug (500)."""
    if is_storage_full(exc):
        return _storage_full(request, exc)
    if is_store_unavailable(exc):
        return _store_unavailable(request, exc)
    return await _unexpected(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types handlers as taking any Exception; each of these gets only its own class.
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidDataset, _invalid_dataset)  # type: ignore[arg-type]
    app.add_exception_handler(ValidationUnavailable, _validation_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(HoldLost, _hold_lost)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    for store_error in (sa_exc.SQLAlchemyError, sqlite3.Error, psycopg.Error, OSError):
        app.add_exception_handler(store_error, _store_error)
    app.add_exception_handler(Exception, _unexpected)


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
