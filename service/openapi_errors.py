"""The error envelope in the OpenAPI document: one schema for every error status of every
operation, and an example for each code the service really answers with.

`ERROR_CODES` lists every `code` a client can meet, with its status and a message like the
ones sent (tests/service/test_openapi_errors.py checks that every code spelled in `service/`
is listed). A route names the codes it answers with, `responses=error_codes("not_found",
"not_ready")`, and their statuses follow; a route that names statuses only
(`service.errors.error_responses`) gets every code of those statuses. `document_errors` then
completes the generated document: the envelope's schema and one example per code on every
error response, FastAPI's `{"detail": ...}` 422 replaced by the envelope that
`service.error_handlers` sends, and the errors any operation can meet added where they apply
(401 with a security requirement, 422 `invalid_request` where FastAPI validates parameters or
a JSON body, 503 and 507 from the job store under /v1, 500).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from service.errors import error_body


class FieldErrorPublic(BaseModel):
    field: str = Field(description="where in the request, e.g. thresholds[0].fraction")
    message: str


class ErrorDetailPublic(BaseModel):
    # Some errors carry more keys beside code and message; a client must ignore those it
    # does not know.
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="what went wrong, for programs; stable across releases")
    message: str = Field(description="what went wrong and what to change, for people")
    details: list[FieldErrorPublic] | None = Field(
        None, description="invalid_request only: every invalid field of the request"
    )


class ErrorPublic(BaseModel):
    """The body of every 4xx and 5xx response."""

    error: ErrorDetailPublic


@dataclass(frozen=True)
class ErrorCode:
    status: int
    example: str  # a message of the kind the service sends with this code
    details: tuple[tuple[str, str], ...] = ()  # (field, message) pairs, for invalid_request


_ID = "5f0c2b8e9a7d4c1e8b3a6f2d1c0e9b8a"

ERROR_CODES: Final[dict[str, ErrorCode]] = {
    "bad_request": ErrorCode(400, "unexpected form field 'files'; this endpoint takes: file"),
    "bad_range": ErrorCode(400, "bad Range header (bytes=x-); send e.g. 'Range: bytes=0-1023'"),
    "unauthorized": ErrorCode(401, "send your API key as `Authorization: Bearer <key>`"),
    "forbidden_host": ErrorCode(403, "this server answers requests addressed to 127.0.0.1, ..."),
    "forbidden_origin": ErrorCode(403, "requests from web pages of another origin are refused"),
    "not_found": ErrorCode(404, f"job {_ID!r} not found"),
    "method_not_allowed": ErrorCode(405, "PUT is not allowed on /v1/jobs"),
    "request_timeout": ErrorCode(408, "the request body did not arrive within 60 seconds"),
    "conflict": ErrorCode(409, "the request conflicts with the resource's state"),
    "job_active": ErrorCode(409, f"job {_ID!r} is running; cancel it first"),
    "not_ready": ErrorCode(
        409, f"job {_ID!r} is running (candidates, 40%); results exist only once it succeeded"
    ),
    "in_use": ErrorCode(409, f"model {_ID!r} is used by a queued or running job"),
    "idempotency_key_in_use": ErrorCode(
        409, "a request with Idempotency-Key 'run-42' is still being served; retry in 1 s"
    ),
    "model_not_ready": ErrorCode(
        409, f"model {_ID!r} (mlp.pt2) is still being inspected (status pending); retry ..."
    ),
    "payload_too_large": ErrorCode(413, "the file is larger than this server accepts"),
    "unsupported_media_type": ErrorCode(415, "send the file as multipart/form-data"),
    "range_not_satisfiable": ErrorCode(416, "the file has 1024 bytes"),
    "invalid_request": ErrorCode(
        422,
        "invalid request: thresholds[0].fraction: Input should be less than 1",
        (("thresholds[0].fraction", "Input should be less than 1"),),
    ),
    "invalid_job": ErrorCode(422, "metric 'accuracy' compares predictions with labels, ..."),
    "invalid_model": ErrorCode(422, f"model {_ID!r} cannot be pruned: op 'foo' is not allowed"),
    "invalid_dataset": ErrorCode(422, "x has shape (16, 5) but the model takes (N, 4)"),
    "invalid_idempotency_key": ErrorCode(
        422, "the Idempotency-Key header must be 1 to 255 visible ASCII characters"
    ),
    "idempotency_key_reused": ErrorCode(
        422, "the Idempotency-Key 'run-42' was used for a different request; send a new key"
    ),
    "label_column_required": ErrorCode(
        422, "data.csv has a column named 'label', which looks like the labels, but ..."
    ),
    "invalid_webhook": ErrorCode(
        422, "webhook host 'example.com' is not in DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS"
    ),
    "mlflow_not_configured": ErrorCode(
        422, "MLflow tracking is off on this server: DEADWEIGHT_MLFLOW_TRACKING_URI is not set"
    ),
    "invalid_filter": ErrorCode(
        422, "unknown status 'done'; accepted values: queued, running, succeeded, ..."
    ),
    "too_many_requests": ErrorCode(429, "this tenant already has 4 jobs queued or running"),
    "internal_error": ErrorCode(500, "internal server error (incident 3f2a9c1e04b7a1d2)"),
    "unavailable": ErrorCode(503, "the service is unavailable; retry in a moment"),
    "broker_unavailable": ErrorCode(503, "the job queue (broker) is unreachable; retry"),
    "store_unavailable": ErrorCode(503, "the job store (database) is unreachable or busy"),
    "blob_store_unavailable": ErrorCode(503, "the blob store (S3) is unreachable or busy"),
    "validation_busy": ErrorCode(503, "every upload check is busy; retry in 30 seconds"),
    "validation_unavailable": ErrorCode(503, "the process that checks uploads did not start"),
    "upload_expired": ErrorCode(503, "the upload waited too long to be checked; send it again"),
    "insufficient_storage": ErrorCode(507, "no storage left for this request"),
    "quota_exceeded": ErrorCode(507, "this tenant stores 1000000 bytes of its quota of 1000000"),
    "storage_full": ErrorCode(507, "the server's disk is full; delete what you no longer need"),
}

# What every upload route can answer (service/uploads.py, service/limits.py, the checks in
# jobs/validation*.py); each route adds the refusal of its own kind of file.
UPLOAD_ERRORS: Final = (
    "bad_request",
    "request_timeout",
    "payload_too_large",
    "unsupported_media_type",
    "too_many_requests",
    "validation_busy",
    "validation_unavailable",
    "upload_expired",
    "quota_exceeded",
    "storage_full",
    "blob_store_unavailable",
)
# A job's published files (service/file_responses.py answers a bad Range itself).
FILE_ERRORS: Final = ("not_found", "bad_range", "range_not_satisfiable", "blob_store_unavailable")

_MARK = "x-deadweight-error-codes"  # the route's codes, read and removed by document_errors
_REF = "#/components/schemas/{model}"
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def error_codes(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the codes a route answers with, by their status."""
    by_status: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status = ERROR_CODES[code].status  # a KeyError here: add the code to ERROR_CODES
        by_status.setdefault(status, {"description": "", _MARK: []})[_MARK].append(code)
    return by_status


def error_example(code: str) -> dict[str, Any]:
    """The example body of `code`, as `service.error_handlers` sends it."""
    entry = ERROR_CODES[code]
    if entry.details:
        details = [{"field": f, "message": m} for f, m in entry.details]
        return error_body(code, entry.example, details=details)
    return error_body(code, entry.example)


def _codes_of(status: int) -> list[str]:
    return [code for code, entry in ERROR_CODES.items() if entry.status == status]


def _implied(path: str, method: str, operation: dict[str, Any]) -> dict[int, list[str]]:
    """Errors an operation can meet whatever it does itself."""
    implied: dict[int, list[str]] = {500: ["internal_error"]}
    if operation.get("security"):
        implied[401] = ["unauthorized"]
    body = operation.get("requestBody", {}).get("content", {})
    if operation.get("parameters") or "application/json" in body:
        # FastAPI validates these before the route runs (service.error_handlers answers).
        implied[422] = ["invalid_request"]
    if path.startswith("/v1/"):
        # Every /v1 route reads the job store (service.error_handlers: outages are 503).
        implied[503] = ["store_unavailable"]
        if method == "post":
            implied[507] = ["storage_full"]  # the database's or the data directory's disk
    return implied


def _own_schema(response: dict[str, Any]) -> bool:
    """A route that documents a body of its own (readyz's 503) keeps it."""
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return schema is not None and schema.get("$ref") != _FASTAPI_422


def _document(operation: dict[str, Any], implied: dict[int, list[str]]) -> None:
    responses: dict[str, Any] = operation["responses"]
    for status in implied:
        responses.setdefault(str(status), {"description": ""})
    for key, response in responses.items():
        if not key.isdigit() or int(key) < 400 or _own_schema(response):
            continue
        status = int(key)
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref") == _FASTAPI_422:
            codes = ["invalid_request"]  # FastAPI's own: the request's validation
        else:
            codes = response.pop(_MARK, None) or _codes_of(status)
        codes += [c for c in implied.get(status, []) if c not in codes]
        listed = ", ".join(f"`{c}`" for c in codes)
        response["description"] = f"{HTTPStatus(status).phrase}: {listed}"
        response["content"] = {
            "application/json": {
                "schema": {"$ref": _REF.format(model="ErrorPublic")},
                "examples": {c: {"summary": c, "value": error_example(c)} for c in codes},
            }
        }


def _add_components(document: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def document_errors(document: dict[str, Any]) -> None:
    """Complete a generated OpenAPI document's error responses, in place (see above)."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                _document(operation, _implied(path, method, operation))
    _add_components(document, [ErrorPublic])
    schemas = document["components"]["schemas"]
    text = str(document["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"/{unused}'" not in text:
            schemas.pop(unused, None)
