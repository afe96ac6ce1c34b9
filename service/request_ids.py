"""A request ID for every HTTP request: in each log line of the request, and returned as
`X-Request-ID`, so a client's report and a proxy's log lead to the API's lines.

An incoming `X-Request-ID` (a proxy's or a client's) is kept when it is sane: 1 to 128
characters of letters, digits and `._:-`; anything else could forge or break log lines, and
is replaced by a fresh random ID.
"""

from __future__ import annotations

import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs.logging_setup import log_fields

HEADER = b"x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(scope: Scope) -> str:
    """The request's incoming ID when it is sane, else a new one (128 random bits, hex)."""
    for name, value in scope["headers"]:
        if name == HEADER:
            text: str = value.decode("latin-1")
            if _SANE.fullmatch(text):
                return text
            break
    return secrets.token_hex(16)


class RequestIds:
    """ASGI middleware: binds the request's ID for logging and returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        with log_fields(request_id=rid):
            await self.app(scope, receive, sending)
