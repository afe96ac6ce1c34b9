"""When a call is tried again, and after how long: the decisions both clients share.

Retried: connection failures (refused, reset, timed out, closed before the answer), 503
(the service or its store or broker is down for now) and 429 (a per-tenant limit), with
exponential backoff and jitter, or after the server's `Retry-After` when it sends one. Two
409s mean "not yet" rather than "no", and are waited out for up to `RetryPolicy.busy_timeout`
seconds: `model_not_ready` (a submission on a model the service is still inspecting) and
`idempotency_key_in_use` (a retry that arrived while the first attempt is still served).
Every call that writes is safe to repeat (see `calls`), so a lost answer costs a retry, never
a second job.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import httpx

from deadweight_client.calls import Call
from deadweight_client.errors import ApiError, ServiceUnreachable, retry_after

RETRIED_STATUSES = frozenset({429, 503})
MODEL_NOT_READY = "model_not_ready"
KEY_IN_USE = "idempotency_key_in_use"
# A URL with no http(s) scheme, or a request httpx itself refuses: no retry can help.
_NOT_TRANSIENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` repeats after transient failures; delays `backoff * 2**n` (equal
    jitter) capped at `max_delay`; a Retry-After above `max_delay` is honoured as sent."""

    retries: int = 5
    backoff: float = 0.5
    max_delay: float = 30.0
    busy_timeout: float = 600.0

    def delay(self, failures: int) -> float:
        """Half of the exponential step, plus up to as much again at random: clients that
        failed together do not come back together."""
        step = min(self.max_delay, self.backoff * 2 ** (failures - 1))
        return float(step / 2 + random.uniform(0, step / 2))


@dataclass
class Attempts:
    """One call's retry state: how many transient failures, since when."""

    call: Call
    policy: RetryPolicy
    failures: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str = ""
    lost_answers: int = 0  # attempts that may have reached the server unanswered

    def raise_for_answer(self, response: httpx.Response) -> None:
        """Raises the `ApiError` of an error answer (read already).

        A DELETE whose earlier attempt may have done the work before its answer was lost
        finds nothing the second time: that 404 is the success the first answer was.
        """
        if not response.is_error:
            return
        if self.call.method == "DELETE" and self.lost_answers and response.status_code == 404:
            return
        raise ApiError.of(response)

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the next attempt, or None: this response is the answer.
        An error response must have been read (its body names the 409's reason)."""
        status = response.status_code
        if status in RETRIED_STATUSES:
            self.failures += 1
            if self.failures > self.policy.retries:
                return None
            return self._wait(retry_after(response))
        if status == 409 and self._not_yet(_code(response)):
            if time.monotonic() - self.started >= self.policy.busy_timeout:
                return None
            # The server's own pace, not a failure's: no backoff; Retry-After, or 1 s.
            return min(retry_after(response) or 1.0, self.policy.max_delay)
        return None

    def _not_yet(self, code: str | None) -> bool:
        if code == MODEL_NOT_READY:
            return self.call.wait_for_model
        return code == KEY_IN_USE and self.call.idempotency_key is not None

    def after_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait after a connection failure.

        Raises:
            ServiceUnreachable: every attempt failed.
        """
        self.failures += 1
        self.lost_answers += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, _NOT_TRANSIENT):
            raise ServiceUnreachable(f"{self.call.method} {self.call.path}: {self.last_error}")
        if self.failures > self.policy.retries:
            raise ServiceUnreachable(
                f"{self.call.method} {self.call.path}: no answer after {self.failures} "
                f"attempt{'s' if self.failures > 1 else ''} ({self.last_error})"
            ) from exc
        return self._wait(None)

    def _wait(self, server_says: float | None) -> float:
        jittered = self.policy.delay(self.failures)
        if server_says is None:
            return jittered
        # The server's figure, and a little jitter on top so a crowd does not return at once.
        return server_says + random.uniform(0, min(1.0, server_says / 4))


def _code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
