"""One HTTP POST of a webhook, as cautious as a call chosen by a tenant must be.

No redirects are followed (a 3xx is a failed attempt: the destination was checked, a
redirect target was not), the response body is read only up to a small bound and then
dropped, and connecting and reading each have a short timeout. The standard library's
`http.client` does exactly this and no more; no proxy settings from the environment apply.
A receiver that trickles its answer a byte at a time would pass every per-read timeout, so
the whole exchange also has a deadline (twice the timeout), after which the socket is shut.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# A receiver answers with a status; whatever it writes beyond this is never read.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Deadweight-Webhooks/1"


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt got: a status code (None when no response came), an error."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.error is None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> SendOutcome:
    """POST `body` to `url`; 2xx is delivered, anything else an error saying what happened."""
    started = time.monotonic()
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    status: int | None = None
    deadline = threading.Timer(2 * timeout, _shut, [connection])
    deadline.daemon = True
    try:
        connection.connect()
        deadline.start()
        connection.request("POST", target, body=body, headers={**headers, "user-agent": USER_AGENT})
        response = connection.getresponse()
        status = response.status
        response.read(MAX_RESPONSE_BYTES)
        error = None if 200 <= status < 300 else _status_error(status)
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    finally:
        deadline.cancel()
        connection.close()
    return SendOutcome(status, error, round((time.monotonic() - started) * 1000))


def _shut(connection: http.client.HTTPConnection) -> None:
    """Past the deadline: the blocked read in the sending thread fails at once."""
    if connection.sock is not None:
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)


def _status_error(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"
