"""A running job's lease and what the worker polls while its engine works.

- `Heartbeat` renews the lease every third of its length, in a thread of its own; when a
  renewal finds the lease gone (reaped while the worker was cut off, taken over, the job
  deleted), its `check` raises `LeaseLost` and the engine is killed.
- `throttled_cancel` asks the store at most once a second whether the job should stop and
  raises `JobCancelled` when it should.
- `throttled_progress` forwards the engine's progress on each stage change and at most twice
  a second.

While the store is unreachable none of them stops the job: the renewal is retried every
`OUTAGE_RETRY_S`, the cancel poll keeps its last answer and progress is skipped (see
`worker.store_retry` and `jobs.reaper` for why a lease that ran out during an outage is
still this worker's when the database comes back).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from jobs.database import STORE_OUTAGE
from jobs.lifecycle import JobLifecycle

log = logging.getLogger("deadweight.worker")

# Progress written to the job store: a database write per report, so less often than the
# engine sends it on its pipe (`worker.engine_process.PIPE_PROGRESS_EVERY_S`).
STORE_PROGRESS_EVERY_S = 0.5
CANCEL_POLL_EVERY_S = 1.0
# While the store is unreachable the lease renewal is retried this often, so that it is
# renewed within a second of the database coming back.
OUTAGE_RETRY_S = 0.5


class LeaseLost(Exception):
    """This attempt no longer holds its job (reaped while cut off, taken over, deleted):
    it records nothing and publishes nothing."""


class JobCancelled(Exception):
    """The store says the running job must stop: the client cancelled it (or it is no longer
    this attempt's, and then recording `cancelled` changes nothing). Its engine is killed."""


class Heartbeat(threading.Thread):
    """Renews a job's lease every third of its length, independent of the engine's work."""

    def __init__(self, lifecycle: JobLifecycle, job_id: str, attempt: int, lease_seconds: int):
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self._lifecycle, self._job_id, self._attempt = lifecycle, job_id, attempt
        self._lease_seconds = lease_seconds
        self._halt = threading.Event()
        self.lost = False

    def run(self) -> None:
        every = self._lease_seconds / 3
        wait = every
        while not self._halt.wait(wait):
            try:
                held = self._lifecycle.renew_lease(self._job_id, self._attempt, self._lease_seconds)
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

    def check(self) -> None:
        """Raise `LeaseLost` once a renewal has found the lease gone."""
        if self.lost:
            raise LeaseLost(self._job_id)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def throttled_progress(
    lifecycle: JobLifecycle, job_id: str, attempt: int
) -> Callable[[str, float], None]:
    """Progress goes to the store on a stage change or at most twice a second; while the
    store is unreachable it is skipped (the next report carries it)."""
    last_stage: str | None = None
    last_at = 0.0

    def report(stage: str, fraction: float) -> None:
        nonlocal last_stage, last_at
        now = time.monotonic()
        if stage != last_stage or now - last_at >= STORE_PROGRESS_EVERY_S or fraction >= 1.0:
            try:
                lifecycle.set_progress(job_id, stage, round(fraction, 4), attempt=attempt)
            except STORE_OUTAGE:
                return
            last_stage, last_at = stage, now

    return report


def throttled_cancel(lifecycle: JobLifecycle, job_id: str, attempt: int) -> Callable[[], None]:
    """A check to call often (four times a second); the store is asked at most once a
    second. While it is unreachable the last answer stands: an outage is never a reason to
    stop.

    The check raises `JobCancelled` when the job should stop.
    """
    asked_at = 0.0
    stop = False

    def check() -> None:
        nonlocal asked_at, stop
        now = time.monotonic()
        if now - asked_at >= CANCEL_POLL_EVERY_S:
            asked_at = now
            with contextlib.suppress(*STORE_OUTAGE):
                stop = lifecycle.is_cancel_requested(job_id, attempt)
        if stop:
            raise JobCancelled(job_id)

    return check
