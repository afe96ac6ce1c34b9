"""The job store, through outages: a worker that cannot reach it keeps its engine running.

While the database cannot be reached (a restart, a dropped connection, SQLite busy), the
reads at the start and the final write are retried with backoff for up to `store_patience`
(ten leases, at least ten minutes); the lease renewal, the cancel poll and progress ride the
outage out on their own (`worker.lease`). See `jobs.reaper` for why a lease that ran out
during an outage is still this worker's when the database comes back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from jobs.database import STORE_OUTAGE
from jobs.settings import Settings

log = logging.getLogger("deadweight.worker")

T = TypeVar("T")


def store_patience(settings: Settings) -> float:
    """How long a worker waits for an unreachable store before giving its attempt up."""
    return float(max(600, 10 * settings.lease_seconds))


def retry(call: Callable[[], T], what: str, patience: float) -> T:
    """`call()`, retried with backoff while the store is unreachable, for up to `patience`
    seconds; then the last error propagates (the job is left to the reaper)."""
    deadline = time.monotonic() + patience
    delay = 0.25
    warned = False
    while True:
        try:
            result = call()
        except STORE_OUTAGE as exc:
            if time.monotonic() + delay > deadline:
                log.error("giving up after %.0f s without the job store (%s)", patience, what)
                raise
            if not warned:
                log.warning("the job store is unreachable (%s: %s); retrying", what, exc)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if warned:
            log.warning("the job store is reachable again (%s)", what)
        return result
