"""Open mode (no API keys) answers this machine's own clients only, never a web page's.

Without keys the API listens on a loopback address, but the user's browser runs there too:
any page it shows could post uploads to http://127.0.0.1:8000 (a cross-origin form needs no
permission) or, by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1), read
the answers as its own origin. So in open mode a request must name a loopback host, and a
request that a browser marks as coming from a page must come from the API's own origin.
Clients without an `Origin` header (curl, scripts, the Python client) are unaffected.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body

_FIX = (
    "in open mode (DEADWEIGHT_API_KEYS unset) the API serves only clients on this machine; "
    "to serve other hosts or web pages, set DEADWEIGHT_API_KEYS (tenant=key pairs) and send "
    "a key with every request"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


# The spellings clients send nearly always, answered without parsing an address.
_COMMON_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def is_loopback_name(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1), without a port."""
    if host in _COMMON_LOOPBACK:
        return True
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


# What a Host header may be (RFC 9110): a name or IPv4 address, or an IPv6 address in
# brackets, then an optional port. Userinfo, paths, queries and fragments are not a host.
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?")


def _split_host(value: str, default_port: int) -> tuple[str, int] | None:
    """`host[:port]` (IPv6 in brackets) -> (lower-case host, port); None when malformed."""
    match = _HOST_RE.fullmatch(value)
    if match is None:
        return None
    host, port = match.group(1).lower(), match.group(2)
    return host.removeprefix("[").removesuffix("]"), int(port) if port else default_port


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    """The page's origin is the one the request is addressed to: scheme, host and port."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != scheme or scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False  # "null" (sandboxed frames, file: pages) is never our origin
    if parts.path or parts.query or parts.fragment:
        return False  # an origin is scheme://host[:port], nothing more
    target = _split_host(host, _DEFAULT_PORTS[parts.scheme])
    return target == (parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme])


_GUARDED_HEADERS = frozenset({b"host", b"origin", b"sec-fetch-site", b"sec-fetch-mode"})


def _guarded_headers(scope: Scope) -> dict[str, str]:
    """The headers the guard reads, the first of each as Starlette's `Headers.get` gives
    it, in one pass over the request's (every request goes through here)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _GUARDED_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def refusal(scope: Scope, check_host: bool = True) -> tuple[str, str] | None:
    """Why an open-mode request is refused, as (code, message); None when it is allowed."""
    headers = _guarded_headers(scope)
    host = headers.get("host")
    if host is not None and check_host:
        parsed = _split_host(host, 80)
        if parsed is None or not is_loopback_name(parsed[0]):
            return "forbidden_host", (
                f"this server answers requests addressed to 127.0.0.1, localhost or [::1] "
                f"only, not to {host!r}: {_FIX}"
            )
    origin = headers.get("origin")
    if origin is not None:
        if host is None or not _same_origin(origin, scope.get("scheme", "http"), host):
            return "forbidden_origin", (
                f"requests from web pages of another origin ({origin}) are refused: {_FIX}"
            )
        return None
    # Without Origin (a GET a page embeds), Fetch Metadata still names a foreign page; a
    # top-level navigation (a link the user follows to /docs) stays allowed, since the page
    # that linked cannot read the answer.
    if headers.get("sec-fetch-site") == "cross-site" and not (
        headers.get("sec-fetch-mode") == "navigate" and scope["method"] in {"GET", "HEAD"}
    ):
        return "forbidden_origin", f"requests from web pages of other sites are refused: {_FIX}"
    return None


def _reached_over_a_socket(scope: Scope) -> bool:
    """uvicorn fills `server` with the listening socket's address; in-process transports
    (Starlette's TestClient) give a name instead, and no browser can reach those."""
    server = scope.get("server")
    if not server:
        return False
    return _is_ip_address(str(server[0]))


@functools.lru_cache(maxsize=16)
def _is_ip_address(text: str) -> bool:
    # Cached: the server's own listening addresses, a handful per process, never a client's.
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class OpenModeGuard:
    """ASGI middleware for open mode: loopback hosts and same-origin requests only (403)."""

    def __init__(self, app: ASGIApp, host_exempt_paths: frozenset[str] = frozenset()) -> None:
        # Paths answered whatever Host names (GET /metrics behind its own token); a page's
        # Origin and Fetch Metadata are still checked there.
        self.app, self.host_exempt_paths = app, host_exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _reached_over_a_socket(scope):
            refused = refusal(scope, check_host=scope["path"] not in self.host_exempt_paths)
            if refused is not None:
                await _forbid(send, *refused)
                return
        await self.app(scope, receive, send)


async def _forbid(send: Send, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # A refused upload's body is not read; the connection cannot carry another.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
