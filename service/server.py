"""The HTTP server in front of the app: uvicorn, with limits against slow and idle clients.

A client that opens connections and never finishes a request costs the server one file
descriptor each, for as long as it likes; a few hundred used to exhaust the process's
descriptors for every tenant, without a key. Three limits close that:

- the request head (request line and headers) must arrive within `header_timeout_seconds`,
  counted from the connection's start or from the end of the previous response (uvicorn has
  no such timeout: `GuardedH11Protocol` below adds it);
- a request body may pause at most `body_timeout_seconds` between two chunks, and a body
  that is not an upload may hold at most 1 MiB (`RequestBodyGuard`: 408 or 413, and the
  route's cleanup runs);
- at most `max_connections` connections are open at once: a connection beyond them gets 503
  and is closed at once, and uvicorn's `limit_concurrency` bounds the requests in flight.

In production a reverse proxy in front adds the same limits per client address (README).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import ClassVar

import h11
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from jobs.settings import Settings
from service.errors import PayloadTooLarge, RequestTimeout, ServiceError, error_body

log = logging.getLogger(__name__)

# Descriptors the process needs besides its client connections: database pool, blob files,
# validation children's pipes, logs, the listening socket, imported libraries.
RESERVED_FDS = 256


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


# Routes that stream their body to disk with limits of their own (service/uploads.py). Every
# other body is read whole into memory by FastAPI, before authentication: it must be small.
STREAMED_UPLOADS = frozenset({("POST", "/v1/models"), ("POST", "/v1/datasets")})
MAX_BUFFERED_BODY_BYTES = 1024 * 1024  # a job request is a few KiB


class RequestBodyGuard:
    """ASGI middleware: a deadline between body chunks, and a size cap on buffered bodies.

    An upload body that pauses longer than `seconds` fails the request with 408; the wait
    starts when the app asks for the next chunk, so only the client's slowness counts. Any
    other body must arrive whole within `seconds` of the first read. A body outside
    `STREAMED_UPLOADS` larger than `max_buffered_bytes` fails with 413, by its Content-Length
    at once or as soon as it grows past the cap. Either error is raised from `receive`, so it
    travels through the route and an upload's partial file is discarded by the same cleanup
    as any other failed upload.
    """

    def __init__(
        self, app: ASGIApp, seconds: float, max_buffered_bytes: int = MAX_BUFFERED_BODY_BYTES
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.max_buffered_bytes = max_buffered_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        streamed = (scope["method"], scope["path"].rstrip("/")) in STREAMED_UPLOADS
        cap = None if streamed else self.max_buffered_bytes
        if cap is not None and _declared_length(scope) > cap:
            await _send_error(send, _too_large(cap))
            return
        body_done = False
        received = 0
        # A small body must arrive whole within the timeout: trickled a byte at a time, it
        # would hold a connection (without a key: FastAPI reads it before authentication).
        whole_by: float | None = None
        failure: ServiceError | None = None  # raised by `guarded_receive`
        started = False  # the client has a response's head
        replaced = False  # ... and it is `failure`'s, not the route's

        async def guarded_receive() -> Message:
            nonlocal body_done, received, failure, whole_by
            if body_done:
                # After the body, the app waits only for a disconnect; that may take long.
                return await receive()
            wait = self.seconds
            if cap is not None:
                now = asyncio.get_running_loop().time()
                whole_by = now + self.seconds if whole_by is None else whole_by
                wait = max(whole_by - now, 0.0)
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                failure = RequestTimeout(_body_timeout_message(self.seconds))
                raise failure from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            received += len(message.get("body", b""))
            if cap is not None and received > cap:
                failure = _too_large(cap)
                raise failure
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            # Whatever the route made of our error (FastAPI reports any failed body read as
            # 400), the client is told what happened.
            if (
                message["type"] == "http.response.start"
                and failure is not None
                and not started
                and message["status"] != failure.status_code
            ):
                await _send_error(send, failure)
                started = replaced = True
                return
            started = started or message["type"] == "http.response.start"
            if not replaced:
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if failure is None or started:
                raise
            await _send_error(send, failure)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0  # chunked or absent: counted while it arrives


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than {cap} bytes; only the uploads "
        "(POST /v1/models, POST /v1/datasets) take large bodies",
        headers={"Connection": "close"},  # the rest of the body is not read
    )


def _body_timeout_message(seconds: float) -> str:
    return (
        f"the request body did not arrive in time (DEADWEIGHT_BODY_TIMEOUT_SECONDS: {seconds:g} "
        "seconds between two chunks of an upload, for the whole of any other body); nothing "
        "was stored, send the request again"
    )


async def _send_error(send: Send, error: ServiceError) -> None:
    body = json.dumps(error_body(error.code, error.message)).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def ensure_descriptors(max_connections: int) -> None:
    """Raise the soft descriptor limit so `max_connections` clients fit beside the rest.

    Three times the cap is asked for where the hard limit allows: asyncio accepts up to
    `backlog` (the cap) connections per turn of its loop, and those beyond the cap hold a
    descriptor for a turn or two before the protocol refuses them.

    Raises:
        ValueError: the hard limit cannot hold even the cap; the message says what to change.
    """
    required = max_connections + RESERVED_FDS
    wanted = 3 * max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < required:
        raise ValueError(
            f"DEADWEIGHT_MAX_CONNECTIONS={max_connections} needs {required} file descriptors "
            f"but this process may open only {hard} (ulimit -n): lower "
            "DEADWEIGHT_MAX_CONNECTIONS or raise the limit"
        )
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if limit > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def uvicorn_config(app: ASGIApp, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the API: the guarded protocol and the connection limits."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        http=protocol_class(settings),
        ws="none",  # the API has no WebSocket routes: no upgrade path to guard
        # One more than the protocol's own cap, which answers first and before the head
        # arrives; this one still bounds requests in flight whose clients have gone.
        limit_concurrency=settings.max_connections + 1,
        # Also how many connections asyncio accepts at once, before the protocol can refuse
        # any: a larger burst would take descriptors beyond the cap.
        backlog=settings.max_connections,
        h11_max_incomplete_event_size=16 * 1024,  # the largest request head accepted
    )


def serve(app: ASGIApp, host: str, port: int, settings: Settings) -> None:
    """Run the API until SIGINT/SIGTERM.

    Raises:
        ValueError: the descriptor limit cannot hold `settings.max_connections`.
    """
    ensure_descriptors(settings.max_connections)
    uvicorn.Server(uvicorn_config(app, host, port, settings)).run()
