"""What can go wrong, as exceptions that carry the server's `code` and `message`.

Every error the service sends is `{"error": {"code": ..., "message": ...}}` with a 4xx/5xx
status; `ApiError.of` turns such a response into the subclass for its status, so a pipeline
can catch `NotFound` or `Conflict` and read `code` (`model_not_ready`, `job_active`, ...) for
the finer cases.
"""

from __future__ import annotations

from typing import Any

import httpx


class DeadweightError(Exception):
    """Base of every error this client raises: `code` (machine-readable) and `message`."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ServiceUnreachable(DeadweightError):
    """No answer from the service (refused, reset, timed out) after every retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "unreachable")


class ApiError(DeadweightError):
    """The service answered with an error status."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code)
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    @staticmethod
    def of(response: httpx.Response) -> ApiError:
        """The error a (read) error response stands for, typed by its status."""
        code, message = _envelope(response)
        cls = _BY_STATUS.get(response.status_code)
        if cls is None:
            cls = ServerError if response.status_code >= 500 else BadRequest
        return cls(response.status_code, code, message, retry_after(response))


class BadRequest(ApiError):
    """The request was refused as it stands (400, 413, 415, 422): change it, don't retry."""


class Unauthorized(ApiError):
    """A missing or unknown API key (401, 403): set DEADWEIGHT_API_KEY."""


class NotFound(ApiError):
    """No such model, dataset, job or file for this API key (404)."""


class Conflict(ApiError):
    """Not now: results of an unfinished job, a model still being inspected, an upload in
    use by a running job (409); `code` says which."""


class RateLimited(ApiError):
    """Past a per-tenant limit on work in flight (429); retried after `retry_after`."""


class ServerError(ApiError):
    """The service failed (5xx)."""


class Unavailable(ServerError):
    """The service, its store or its broker is down for now (503), after every retry."""


class InvalidModel(BadRequest):
    """The uploaded model was refused when the service inspected it."""


class JobFailed(DeadweightError):
    """A job ended `failed` or `cancelled` (`Job.raise_for_status`); `job_id` names it."""

    def __init__(self, job_id: str, status: str, message: str) -> None:
        super().__init__(message, f"job_{status}")
        self.job_id = job_id
        self.status = status


class NoRecommendation(DeadweightError):
    """A job recommends no candidate: none stayed within its `max_metric_drop`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "no_recommendation")


class WaitTimeout(DeadweightError, TimeoutError):
    """A job (or a model's inspection) had not finished within the time given to wait."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "wait_timeout")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    415: BadRequest,
    422: BadRequest,
    429: RateLimited,
    503: Unavailable,
}


def _envelope(response: httpx.Response) -> tuple[str, str]:
    """The envelope's code and message; a body of another shape (a proxy's HTML page) keeps
    its status's reason and the start of its text."""
    try:
        body: Any = response.json()
        error = body["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200]
        return f"http_{response.status_code}", text or response.reason_phrase


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the service sends seconds; an HTTP date is ignored)."""
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
