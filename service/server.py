"""The HTTP server in front of the app: how `deadweight serve` starts uvicorn, with limits.

Three limits keep slow and idle clients from exhausting the server:

- the request head must arrive within `header_timeout_seconds`, a client must keep reading
  its response, and at most `max_connections` connections are open at once
  (`service.http_protocol.GuardedH11Protocol`: 408, a dropped connection, or 503);
- a request body may pause at most `body_timeout_seconds` between two chunks, and a body
  that is not an upload may hold at most 1 MiB (`service.body_guard.RequestBodyGuard`: 408 or
  413, and the route's cleanup runs);
- the process's descriptor limit is raised to fit the connection cap (`ensure_descriptors`),
  and uvicorn's `limit_concurrency` bounds the requests in flight.

In production a reverse proxy in front adds the same limits per client address (README).
"""

from __future__ import annotations

import gc
import resource

import uvicorn
from starlette.types import ASGIApp

from jobs.settings import Settings
from service.http_protocol import protocol_class

# Descriptors the process needs besides its client connections: database pool, blob files,
# validation children's pipes, logs, the listening socket, imported libraries.
RESERVED_FDS = 256


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
        # Logging is configured by `deadweight serve` (jobs.logging_setup): uvicorn's loggers
        # then write in the service's format, with the request's ID.
        log_config=None,
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
    # What start-up made (the imported modules, the app) lives as long as the process: out of
    # the collector's sight, a full collection stays short, so that a burst of connections
    # is refused at the pace the connection cap counts on rather than after a long pause.
    gc.freeze()
    uvicorn.Server(uvicorn_config(app, host, port, settings)).run()
