"""The job store, through outages: a worker that cannot reach it keeps its engine running.

While the database cannot be reached (a restart, a dropped connection, SQLite busy), the
cancel poll keeps its last answer, progress is skipped, and the lease renewal, the reads at
the start and the final write are retried with backoff for up to `store_patience` (ten
leases, at least ten minutes). See `jobs.reaper` for why a lease that ran out during an
outage is still this worker's when the database comes back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from jobs.lifecycle import STORE_OUTAGE
from jobs.settings import Settings
from jobs.store import JobStore

log = logging.getLogger("deadweight.worker")

T = TypeVar("T")

PROGRESS_EVERY_S = 0.5
CANCEL_POLL_EVERY_S = 1.0
# While the store is unreachable the lease renewal is retried this often, so that it is
# renewed within a second of the database coming back.
OUTAGE_RETRY_S = 0.5


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


class Heartbeat(threading.Thread):
    """Renews a job's lease every third of its length, independent of the engine's work.

    `lost` turns True when a renewal finds the lease gone (reaped, cancelled, deleted):
    the job's engine is then stopped. While the store is unreachable the renewal is retried
    every `OUTAGE_RETRY_S`, and the engine keeps running.
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int, lease_seconds: int):
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self._store, self._job_id, self._attempt = store, job_id, attempt
        self._lease_seconds = lease_seconds
        self._halt = threading.Event()
        self.lost = False

    def run(self) -> None:
        every = self._lease_seconds / 3
        wait = every
        while not self._halt.wait(wait):
            try:
                held = self._store.renew_lease(self._job_id, self._attempt, self._lease_seconds)
            except STORE_OUTAGE as exc:
                if wait == every:
                    log.warning("job %s: cannot renew its lease (%s); retrying", self._job_id, exc)
                wait = OUTAGE_RETRY_S
                continue
            except Exception:
                log.exception("job %s: lease renewal failed; retrying", self._job_id)
                continue
            if not held:
                self.lost = True
                return
            if wait != every:
                log.warning("job %s: lease renewed after an outage of the store", self._job_id)
            wait = every

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def throttled_progress(store: JobStore, job_id: str, attempt: int) -> Callable[[str, float], None]:
    """Progress goes to the store on a stage change or at most twice a second; while the
    store is unreachable it is skipped (the next report carries it)."""
    last: dict[str, Any] = {"stage": None, "at": 0.0}

    def report(stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != last["stage"] or now - last["at"] >= PROGRESS_EVERY_S or fraction >= 1.0:
            try:
                store.set_progress(job_id, stage, round(fraction, 4), attempt=attempt)
            except STORE_OUTAGE:
                return
            last.update(stage=stage, at=now)

    return report


def throttled_cancel(
    store: JobStore, job_id: str, attempt: int, heartbeat: Heartbeat
) -> Callable[[], bool]:
    """Asked four times a second; the store is asked at most once a second. While it is
    unreachable the last answer stands: an outage is never a reason to stop."""
    last = {"at": 0.0, "value": False}

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - float(last["at"]) >= CANCEL_POLL_EVERY_S:
            last["at"] = now
            with contextlib.suppress(*STORE_OUTAGE):
                last["value"] = store.is_cancel_requested(job_id, attempt)
        return heartbeat.lost or bool(last["value"])

    return should_cancel
