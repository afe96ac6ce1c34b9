"""ASGI middleware that bounds request bodies: a deadline between chunks, a cap on size.

uvicorn reads a body as fast as the client sends it, and FastAPI reads any body that is not
an upload whole into memory, before authentication. A client trickling a body, or sending a
huge JSON one, would hold a connection or memory without a key. `RequestBodyGuard` fails such
a request with 408 or 413; the error is raised from `receive`, so it travels through the route
and an upload's partial file is discarded by the same cleanup as any other failed upload.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, RequestTimeout, ServiceError, error_body

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
        length, chunked = _body_framing(scope)
        if length == 0 and not chunked:
            # No body (HTTP/1.1: neither Content-Length nor chunked): no chunk to wait for
            # and nothing to count, so the request passes as is (most requests are GETs).
            await self.app(scope, receive, send)
            return
        streamed = (scope["method"], scope["path"].rstrip("/")) in STREAMED_UPLOADS
        cap = None if streamed else self.max_buffered_bytes
        if cap is not None and length > cap:
            await _send_error(send, _too_large(cap))
            return
        exchange = _GuardedExchange(receive, send, self.seconds, cap)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if exchange.failure is None or exchange.started:
                raise
            await _send_error(send, exchange.failure)


class _GuardedExchange:
    """One request as the app sees it: its body read under the guard's limits, and its
    response passed on, or replaced by the guard's own error."""

    def __init__(self, receive: Receive, send: Send, seconds: float, cap: int | None) -> None:
        self._receive = receive
        self._send = send
        self.seconds = seconds
        self.cap = cap  # None: a streamed upload, whose size its route limits
        self.body_done = False
        self.received = 0
        # A small body must arrive whole within the timeout: trickled a byte at a time, it
        # would hold a connection (without a key: FastAPI reads it before authentication).
        self.whole_by: float | None = None
        self.failure: ServiceError | None = None  # raised by `receive`
        self.started = False  # the client has a response's head
        self.replaced = False  # ... and it is `failure`'s, not the route's

    async def receive(self) -> Message:
        if self.body_done:
            # After the body, the app waits only for a disconnect; that may take long.
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self._wait())
        except TimeoutError:
            self.failure = RequestTimeout(_body_timeout_message(self.seconds))
            raise self.failure from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        self.received += len(message.get("body", b""))
        if self.cap is not None and self.received > self.cap:
            self.failure = _too_large(self.cap)
            raise self.failure
        return message

    def _wait(self) -> float:
        """Seconds the next chunk may take: `seconds` for an upload's chunk; for any other
        body, what is left of `seconds` since its first read."""
        if self.cap is None:
            return self.seconds
        now = asyncio.get_running_loop().time()
        if self.whole_by is None:
            self.whole_by = now + self.seconds
        return max(self.whole_by - now, 0.0)

    async def send(self, message: Message) -> None:
        # Whatever the route made of our error (FastAPI reports any failed body read as
        # 400), the client is told what happened.
        if (
            message["type"] == "http.response.start"
            and self.failure is not None
            and not self.started
            and message["status"] != self.failure.status_code
        ):
            await _send_error(self._send, self.failure)
            self.started = self.replaced = True
            return
        self.started = self.started or message["type"] == "http.response.start"
        if not self.replaced:
            await self._send(message)


def _body_framing(scope: Scope) -> tuple[int, bool]:
    """The declared Content-Length (0 when absent: a chunked body is counted while it
    arrives), and whether the body is chunked."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and length is None:
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return length or 0, chunked


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
