"""A job's figures for /metrics, pushed to the job store when its attempt has ended.

The pool process that ran the job exits right after (one job per child), so its figures are
written to the store (`jobs.metrics_store`), where every API replica's collector reads them,
rather than kept in a registry of its own. Writing them is best effort: a job's outcome
never depends on its metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from jobs.blobs import BlobStore
from jobs.logging_setup import set_log_field
from jobs.metrics_store import (
    CANDIDATES_EVALUATED,
    JOB_DURATION,
    JOBS_FINISHED,
    STAGE_DURATION,
    Tally,
)
from jobs.records import JobRecord
from jobs.results_file import read_results
from jobs.states import JobStatus
from jobs.store import JobStore

log = logging.getLogger("deadweight.worker")


class StageClock:
    """Times the engine's stages from its progress reports, and the attempt as a whole."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._stage: tuple[str, float] | None = None
        self.stages: list[tuple[str, float]] = []  # (stage, seconds), in order

    def watching(self, report: Callable[[str, float], None]) -> Callable[[str, float], None]:
        """`report`, noting each stage change on the way."""

        def on_progress(stage: str, fraction: float) -> None:
            self.enter(stage)
            report(stage, fraction)

        return on_progress

    def enter(self, stage: str) -> None:
        now = time.monotonic()
        if self._stage is not None and self._stage[0] == stage:
            return
        self.close(now)
        self._stage = (stage, now)
        set_log_field("stage", stage)  # the job's later lines name the stage it is in

    def close(self, now: float | None = None) -> None:
        """End the stage under way (the last one ends with the attempt)."""
        if self._stage is not None:
            stage, since = self._stage
            self.stages.append((stage, (time.monotonic() if now is None else now) - since))
            self._stage = None


def push_job_metrics(
    store: JobStore, blobs: BlobStore, job: JobRecord, status: JobStatus, clock: StageClock
) -> None:
    """Count the job's end state, its duration and stages, and its candidates."""
    clock.close()
    tally = Tally()
    tally.count(JOBS_FINISHED, {"state": status.value, "tenant": job.tenant})
    tally.observe(JOB_DURATION, {"state": status.value}, time.monotonic() - clock.started)
    for stage, seconds in clock.stages:
        tally.observe(STAGE_DURATION, {"stage": stage}, seconds)
    if status is JobStatus.SUCCEEDED:
        tally.count(CANDIDATES_EVALUATED, {}, _candidates(blobs, job.id))
    try:
        store.metrics.add(tally)
    except Exception as exc:  # the store is down: the job's outcome stands, its figures go
        log.warning("job %s: its metrics were not recorded: %s", job.id, exc)


def _candidates(blobs: BlobStore, job_id: str) -> int:
    results = read_results(blobs, job_id)
    candidates = results.get("candidates") if results is not None else None
    return len(candidates) if isinstance(candidates, list) else 0
