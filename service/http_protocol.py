"""The HTTP/1.1 protocol the API serves: uvicorn's h11 protocol with three connection guards.

A client that opens connections and never finishes a request costs the server one file
descriptor each, for as long as it likes; a few hundred used to exhaust the process's
descriptors for every tenant, without a key. `GuardedH11Protocol` bounds that per connection:

- the request head (request line and headers) must arrive within `header_timeout`, counted
  from the connection's start or from the end of the previous response (uvicorn has no such
  timeout);
- a client that stops reading its response is dropped after `write_timeout`;
- beyond `max_connections` open connections, a new one gets 503 and is closed at once.

These work below the app: there is no request to answer yet, so the error responses are
written onto the transport as bytes, in the API's error envelope. The request body is guarded
one layer up, by the ASGI middleware in `service.body_guard`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from jobs.settings import Settings
from service.errors import error_body

log = logging.getLogger(__name__)


def _raw_error(status: str, code: str, message: str, *headers: str) -> bytes:
    """A whole error response, in the API's envelope, written by the protocol itself (there
    is no request, so no app to answer)."""
    body = json.dumps(error_body(code, message)).encode()
    lines = [
        f"HTTP/1.1 {status}",
        "content-type: application/json",
        *headers,
        "connection: close",
        f"content-length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_REQUEST_TIMEOUT = _raw_error(
    "408 Request Timeout",
    "request_timeout",
    "the request headers did not arrive in time (DEADWEIGHT_HEADER_TIMEOUT_SECONDS); "
    "send the request again",
)
_OVERLOADED = _raw_error(
    "503 Service Unavailable",
    "too_many_connections",
    "too many open connections to this server (DEADWEIGHT_MAX_CONNECTIONS); retry in a moment",
    "retry-after: 5",
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head, one for a client that
    stops reading its response, and a connection cap.

    The deadline is armed when the connection is made and after each response, and cancelled
    once a request head is complete; the body is the middleware's business. Bytes that keep
    arriving do not extend it, so a client trickling one header byte at a time is cut off too.
    """

    header_timeout: ClassVar[float] = 15.0
    write_timeout: ClassVar[float] = 60.0
    max_connections: ClassVar[int] = 512

    _head_deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Refused before it costs more than a moment: the descriptor count stays bounded
            # however many connections a client opens.
            _warn_refused(self.max_connections)
            transport.write(_OVERLOADED)
            transport.close()
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_write_deadline()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The client stopped reading: its unread response waits in memory. It must read some
        # of it within `write_timeout`, or the connection is dropped (a download nobody
        # reads would otherwise hold its connection, and its buffer, forever).
        super().pause_writing()
        self._cancel_write_deadline()
        self._write_deadline = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_deadline()

    def _cancel_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_timed_out(self) -> None:
        self._write_deadline = None
        log.info("dropping a connection whose client read nothing for %.0f s", self.write_timeout)
        self.transport.abort()  # at once: its unsent buffer goes with it

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_in_progress():
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head (or what is left of an unread body) must come in time too;
        # a pipelined request whose head was already read has started a new cycle instead.
        if not self.transport.is_closing() and not self._request_in_progress():
            self._arm_head_deadline()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_head_deadline()
        super().handle_websocket_upgrade(event)

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self._request_in_progress():
            return
        pending, _ = self.conn.trailing_data
        # A half-sent head gets a reason. An idle connection, or one still sending the rest of
        # a body that was answered already, is simply closed, as uvicorn's keep-alive timeout
        # does: a response there could be taken for the answer to a later request.
        if pending and self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


_last_refusal_warning = 0.0


def _warn_refused(max_connections: int) -> None:
    """Warn at most once a minute: a flood of refusals must not become a flood of log lines."""
    global _last_refusal_warning
    now = time.monotonic()
    if now - _last_refusal_warning >= 60:
        _last_refusal_warning = now
        log.warning(
            "refusing connections: %d are open (DEADWEIGHT_MAX_CONNECTIONS)", max_connections
        )


def protocol_class(settings: Settings) -> type[GuardedH11Protocol]:
    """A protocol class carrying this server's limits (uvicorn instantiates it per connection)."""

    class Configured(GuardedH11Protocol):
        pass

    Configured.header_timeout = settings.header_timeout_seconds
    Configured.write_timeout = settings.body_timeout_seconds
    Configured.max_connections = settings.max_connections
    return Configured
