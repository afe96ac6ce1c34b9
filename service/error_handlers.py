"""Exception handlers: every error, ours or a library's, answered in the API's envelope.

`install_error_handlers` registers one handler per kind of failure: the service's own
`ServiceError`s, a refused dataset, an upload whose validation could not run or whose hold
expired, FastAPI's request validation, Starlette's HTTP errors, the job store's and the S3
blob store's outages, and anything else (500 with an incident ID; the traceback stays in the
log). The error types and the envelope are in `service.errors`; this module is the only
place that builds a response from an exception.
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
from jobs.datasets import DatasetFileError
from jobs.object_store import STORE_ERRORS, is_outage
from jobs.validation import ValidationBusy
from jobs.validation_launch import ValidationUnavailable
from service.errors import (
    BadRequest,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    StorageFull,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    error_body,
)
from service.store_errors import STORE_RETRY_AFTER_SECONDS, is_storage_full, is_store_unavailable

log = logging.getLogger(__name__)


# A library's HTTP error gets the code our own error of that status has; any other status
# `http_<status>`.
_HTTP_CODES = {
    403: "forbidden",
    405: "method_not_allowed",
    **{
        error.status_code: error.default_code
        for error in (
            BadRequest,
            Unauthorized,
            NotFound,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            TooManyRequests,
            InsufficientStorage,
        )
    },
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


def _response(exc: ServiceError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers
    )


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return _response(exc)


async def _invalid_dataset(_: Request, exc: DatasetFileError) -> JSONResponse:
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
    body = error_body(Unprocessable.default_code, message, details=details)
    return JSONResponse(body, status_code=Unprocessable.status_code)


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
    return _response(StorageFull(message))


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


async def _blob_store_error(request: Request, exc: Exception) -> JSONResponse:
    """An S3 blob store that cannot be reached, or is busy, is the service's state (503);
    any other refusal (credentials, a missing bucket) is the operator's to fix (500)."""
    if not is_outage(exc):
        return await _unexpected(request, exc)
    log.warning(
        "blob store unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    message = (
        "the blob store (S3) is unreachable or busy, so this request could not be completed; "
        f"retry in {STORE_RETRY_AFTER_SECONDS} seconds (Retry-After)"
    )
    return JSONResponse(
        error_body("blob_store_unavailable", message),
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler above on `app` (Starlette picks the closest class by MRO)."""
    # Starlette types handlers as taking any Exception; each of these gets only its own class.
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(DatasetFileError, _invalid_dataset)  # type: ignore[arg-type]
    app.add_exception_handler(ValidationUnavailable, _validation_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(HoldLost, _hold_lost)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    for store_error in (sa_exc.SQLAlchemyError, sqlite3.Error, psycopg.Error, OSError):
        app.add_exception_handler(store_error, _store_error)
    for blob_store_error in STORE_ERRORS:
        app.add_exception_handler(blob_store_error, _blob_store_error)
    app.add_exception_handler(Exception, _unexpected)
