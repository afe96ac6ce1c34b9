"""Publishing a job's result set and recording its end state.

A job's files are written into a hidden folder of its own (`jobs/.<id>.attempt-<n>/`); a
manifest is written last (`jobs.manifest.write_manifest`), and the folder is renamed to
`jobs/<id>/` when the run has succeeded, so a client never sees half a result set (with an
S3 store: uploaded under the attempt's keys, then a manifest object written last names
them; `jobs.s3_blobs`). The end state is recorded after that step, conditional on the
attempt, so a worker whose lease was taken over changes nothing; a published set is
recognised as the job's outcome after a crash between the two (`BlobStore.is_published`).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from jobs.blobs import BlobStore
from jobs.manifest import write_manifest
from jobs.settings import Settings
from jobs.states import TERMINAL_STATUSES, JobStatus
from jobs.store import JobStore
from worker.lease import LeaseLost
from worker.output_guard import OutputGuard
from worker.store_retry import retry, store_patience

log = logging.getLogger("deadweight.worker")

# Test-only hook: the worker dies (SIGKILL) right after publishing this attempt's results.
_TEST_CRASH_AFTER_PUBLISH = "DW_TEST_CRASH_AFTER_PUBLISH"

# The end state to record, and the message for the user (None when it succeeded).
JobOutcome = tuple[JobStatus, str | None]


def publish(
    store: JobStore,
    blobs: BlobStore,
    job_id: str,
    attempt: int,
    settings: Settings,
    staging: Path,
    guard: OutputGuard,
) -> JobOutcome:
    """Seal the result set (manifest last), check its size, and publish it in one step.

    The lease is checked first, so an attempt that lost it publishes nothing. A set is
    never merged or overwritten: if another attempt already published a complete set, that
    set is the outcome (`BlobStore.publish_results`).

    Raises:
        LeaseLost: this attempt no longer holds the job.
        OutputRefused: the sealed set is over the job's output cap.
    """
    patience = store_patience(settings)
    if not retry(
        lambda: store.lifecycle.renew_lease(job_id, attempt, settings.lease_seconds),
        "renew",
        patience,
    ):
        raise LeaseLost(job_id)
    size = write_manifest(staging)
    guard.check_total(size)
    if not blobs.publish_results(job_id, attempt, staging):
        log.warning("job %s attempt %d: a result set is already published", job_id, attempt)
    if os.environ.get(_TEST_CRASH_AFTER_PUBLISH) == str(attempt):
        os.kill(os.getpid(), signal.SIGKILL)  # test-only: the crash window under test
    return (JobStatus.SUCCEEDED, None)


def record_outcome(
    store: JobStore,
    blobs: BlobStore,
    job_id: str,
    attempt: int,
    outcome: JobOutcome,
    patience: float,
) -> bool:
    """Write the end state (retried through outages); True when it was recorded. A success
    the store refuses leaves its files only where they can still be the job's outcome."""
    status, error = outcome
    done = retry(
        lambda: store.lifecycle.finish(job_id, status, error, attempt=attempt), "finish", patience
    )
    if done or status is not JobStatus.SUCCEEDED:
        return done
    # Not recorded: cancelled, deleted, or taken over meanwhile. A later attempt (or the
    # reaper) records success from the published folder, or has already done so.
    record = retry(lambda: store.jobs.get_any_tenant(job_id), "read the job", patience)
    if record is None or (
        record.status in TERMINAL_STATUSES and record.status is not JobStatus.SUCCEEDED
    ):
        blobs.remove_job_dir(job_id)
    return False
