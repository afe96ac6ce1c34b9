"""Running one job or one model inspection against the stores; called by the task bodies.

The engine itself runs in a limited child process (`worker.sandbox`); this side owns the
stores. A job's files are written into a hidden folder of its own, a manifest is written
last, and the folder is renamed into place when the run has succeeded, so a client never
sees half a result set, and a second delivery of the same message finds the job no longer
queued and does nothing. An attempt that finds its job's result set already published
(its predecessor died between the rename and recording success) records `succeeded` from
it without running the engine again.

Outages of the job store cost nothing: while the database cannot be reached the engine
keeps running; the cancel poll keeps its last answer, progress is skipped, and the lease
renewal, the reads at the start and the final write are retried with backoff
(`worker.store_retry`). Output size and free disk are watched by `worker.output_guard`.

Errors a user sees are stable messages: an engine's typed refusal keeps its reason (with
paths inside the data directory replaced by upload names), anything unexpected becomes
an incident ID whose details are in this worker's log.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from jobs.blobs import BlobStore
from jobs.datasets import InvalidDataset
from jobs.disk_space import is_disk_full
from jobs.lifecycle import is_complete, write_manifest
from jobs.records import DatasetRecord, JobRecord
from jobs.settings import Settings
from jobs.states import TERMINAL_STATUSES, JobStatus, ModelStatus
from jobs.store import JobStore
from jobs.usage import quota_left
from pruning.errors import Cancelled
from worker.messages import incident_message, log_failure, scrub
from worker.output_guard import OutputGuard, OutputRefused, disk_full_message
from worker.sandbox import (
    EngineDiskFull,
    EngineFileTooLarge,
    EngineTimedOut,
    Limits,
    SandboxFailure,
    run_sandboxed,
)
from worker.store_retry import (
    Heartbeat,
    retry,
    store_patience,
    throttled_cancel,
    throttled_progress,
)

log = logging.getLogger("deadweight.worker")

# Test-only hook: the worker dies (SIGKILL) right after publishing this attempt's results.
_TEST_CRASH_AFTER_PUBLISH = "DW_TEST_CRASH_AFTER_PUBLISH"

Outcome = tuple[JobStatus, str | None]


class LeaseLost(Exception):
    """This attempt no longer holds its job (reaped while cut off, cancelled, deleted)."""


# -- model inspection ----------------------------------------------------------------------
def execute_inspection(
    model_id: str, store: JobStore, blobs: BlobStore, settings: Settings
) -> None:
    """Read an uploaded model with the safe reader, in the sandbox; record what it holds.

    The message names a model, but the worker inspects the fairest pending one
    (`jobs.scheduling`): every pending model has a message of its own, so none is left out.
    """
    patience = store_patience(settings)
    claims = settings.inspection_claim_seconds()
    record = retry(
        lambda: store.claim_fair_inspection(model_id, claims), "claim an inspection", patience
    )
    if record is None:
        return  # nothing pending: inspected by another delivery, or deleted
    model_id = record.id
    blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".inspect-{model_id}-", dir=blobs.tmp_dir))
    model_path = str(blobs.path(record.sha256))
    limit = settings.inspection_time_limit
    status, info, error = ModelStatus.READY, None, None
    try:
        info = run_sandboxed(
            {"kind": "inspect", "model": model_path, "max_parameters": settings.max_parameters},
            workdir,
            Limits(
                settings.job_memory_bytes,
                limit * max(1, os.cpu_count() or 1),
                wall_seconds=limit,
            ),
        )
    except EngineTimedOut:
        status = ModelStatus.INVALID
        error = (
            f"the model took longer than {limit} s to inspect "
            "(DEADWEIGHT_INSPECTION_TIME_LIMIT); a model this costly to read is refused"
        )
    except SandboxFailure as exc:
        log_failure(f"model {model_id}", exc)
        status = ModelStatus.INVALID
        error = scrub(str(exc), {model_path: record.filename}, blobs.root)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    retry(
        lambda: store.set_model_inspected(model_id, status, info, error),
        "record the inspection",
        patience,
    )


# -- jobs ----------------------------------------------------------------------------------
def execute_job(job_id: str, store: JobStore, blobs: BlobStore, settings: Settings) -> None:
    """Run a queued job to its end state; a job that is not queued any more is left alone.

    The job's lease is renewed by a heartbeat thread while the engine works and until the
    end state is recorded; every change recorded names this attempt, so a worker whose
    lease was taken over changes nothing.
    """
    # The lease owner: host and process, named in the reason when a worker is lost, and a
    # token of this call: a retried claim finds its own job (jobs.scheduling), while a later
    # process that happens to reuse the pid does not take a dead worker's.
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    patience = store_patience(settings)
    # The fairest queued job, which is `job_id` unless another tenant waits with fewer
    # jobs running (`jobs.scheduling`); every queued job has a message of its own.
    job = retry(
        lambda: store.start_fair_job(job_id, owner=owner, lease_seconds=settings.lease_seconds),
        "start the job",
        patience,
    )
    if job is None:
        log.info("job %s is not queued any more, nor any other; nothing to do", job_id)
        return
    if job.id != job_id:
        log.info("message for job %s: starting job %s, whose tenant waits longer", job_id, job.id)
    job_id = job.id
    attempt = job.attempts
    heartbeat = Heartbeat(store, job_id, attempt, settings.lease_seconds)
    heartbeat.start()
    try:
        outcome = _run_attempt(job, store, blobs, settings, heartbeat)
        if outcome is not None:
            _record(store, blobs, job_id, attempt, outcome, patience)
    finally:
        heartbeat.stop()


def _run_attempt(
    job: JobRecord, store: JobStore, blobs: BlobStore, settings: Settings, heartbeat: Heartbeat
) -> Outcome | None:
    """Run the engine and publish; the outcome to record (None: nothing, the lease is gone).

    Every folder this attempt made is gone when it returns: a client that sees the end
    state finds no partial files.
    """
    job_id, attempt = job.id, job.attempts
    final = blobs.job_dir(job_id)
    # Folders of earlier attempts whose worker died are this attempt's to clear.
    for folder in final.parent.glob(f".{job_id}.attempt-*"):
        shutil.rmtree(folder, ignore_errors=True)
    if final.exists():
        if is_complete(final):
            log.warning("job %s: found its published result set; recording it", job_id)
            return (JobStatus.SUCCEEDED, None)
        shutil.rmtree(final, ignore_errors=True)  # never published whole: not an outcome
    staging = final.with_name(f".{job_id}.attempt-{attempt}")
    workdir = final.with_name(f".{job_id}.attempt-{attempt}.work")
    left = retry(
        lambda: quota_left(store, blobs, job.tenant, settings.tenant_storage_bytes),
        "read the tenant's storage",
        store_patience(settings),
    )
    guard = OutputGuard(settings, staging, blobs.root, quota_left=left)
    patience = store_patience(settings)
    paths: dict[str, str] = {}
    try:
        staging.mkdir(parents=True)
        guard.check()
        request, paths = _job_request(job, store, blobs, settings, staging, patience)
        run_sandboxed(
            request,
            workdir,
            Limits.for_job(
                settings.job_memory_bytes, settings.job_time_limit, settings.job_output_bytes
            ),
            on_progress=throttled_progress(store, job_id, attempt),
            should_cancel=throttled_cancel(store, job_id, attempt, heartbeat),
            watch=guard.throttled(),
        )
        shutil.rmtree(workdir, ignore_errors=True)  # gone before success is visible
        return _publish(store, job_id, attempt, settings, staging, final, guard)
    except LeaseLost:
        log.warning("job %s attempt %d: its lease is gone; recording nothing", job_id, attempt)
        return None
    except Cancelled:
        return (JobStatus.CANCELLED, "cancelled by the client")
    except OutputRefused as exc:
        return (JobStatus.FAILED, str(exc))
    except EngineDiskFull:
        return (JobStatus.FAILED, disk_full_message(settings))
    except EngineFileTooLarge:
        return (JobStatus.FAILED, guard.over_cap())
    except (SandboxFailure, InvalidDataset) as exc:
        log_failure(f"job {job_id}", exc)
        # A write that failed for lack of space or past the output cap shows as whatever
        # the engine made of it (often an internal error): the folders tell what it was.
        explained = guard.explain_failure()
        return (JobStatus.FAILED, explained or scrub(str(exc), paths, blobs.root))
    except SoftTimeLimitExceeded:
        limit = settings.job_soft_time_limit
        return (JobStatus.FAILED, f"the job ran past its time limit ({limit} s)")
    except OSError as exc:
        if is_disk_full(exc):
            return (JobStatus.FAILED, disk_full_message(settings))
        return (JobStatus.FAILED, incident_message(job_id, exc))
    except Exception as exc:
        return (JobStatus.FAILED, incident_message(job_id, exc))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _publish(
    store: JobStore,
    job_id: str,
    attempt: int,
    settings: Settings,
    staging: Path,
    final: Path,
    guard: OutputGuard,
) -> Outcome:
    """Seal the result set (manifest last), check its size, and move it into place.

    The lease is checked first, so an attempt that lost it publishes nothing. The folder is
    renamed, never merged or overwritten: if another attempt already published a complete
    set, that set is the outcome.
    """
    patience = store_patience(settings)
    if not retry(
        lambda: store.renew_lease(job_id, attempt, settings.lease_seconds), "renew", patience
    ):
        raise LeaseLost(job_id)
    size = write_manifest(staging)
    guard.check_total(size)
    try:
        staging.rename(final)
    except OSError:
        if not is_complete(final):
            raise
        log.warning("job %s attempt %d: a result set is already published", job_id, attempt)
    if os.environ.get(_TEST_CRASH_AFTER_PUBLISH) == str(attempt):
        os.kill(os.getpid(), signal.SIGKILL)  # test-only: the crash window under test
    return (JobStatus.SUCCEEDED, None)


def _record(
    store: JobStore, blobs: BlobStore, job_id: str, attempt: int, outcome: Outcome, patience: float
) -> None:
    """Write the end state (retried through outages). A success the store refuses leaves
    its files only where they can still be the job's outcome."""
    status, error = outcome
    done = retry(
        lambda: store.finish_job(job_id, status, error, attempt=attempt), "finish", patience
    )
    if done or status is not JobStatus.SUCCEEDED:
        return
    # Not recorded: cancelled, deleted, or taken over meanwhile. A later attempt (or the
    # reaper) records success from the published folder, or has already done so.
    record = retry(lambda: store.get_job_any_tenant(job_id), "read the job", patience)
    if record is None or (
        record.status in TERMINAL_STATUSES and record.status is not JobStatus.SUCCEEDED
    ):
        blobs.remove_job_dir(job_id)


def _job_request(
    job: JobRecord,
    store: JobStore,
    blobs: BlobStore,
    settings: Settings,
    out_dir: Path,
    patience: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the sandboxed engine needs (file paths and settings, no store, no secrets), and
    each upload's path with its name, to keep paths out of messages."""
    model = retry(lambda: store.get_model_any_tenant(job.model_id), "read", patience)
    data = retry(lambda: store.get_dataset_any_tenant(job.dataset_id), "read", patience)
    if model is None or data is None:
        raise InvalidDataset("the job's model or dataset was deleted before it ran")
    eval_id = job.eval_dataset_id
    eval_data = (
        retry(lambda: store.get_dataset_any_tenant(eval_id), "read", patience) if eval_id else None
    )
    names = {str(blobs.path(model.sha256)): model.filename}

    def dataset(record: DatasetRecord) -> dict[str, Any]:
        names[str(blobs.path(record.sha256))] = record.filename
        return {
            "path": str(blobs.path(record.sha256)),
            "format": record.format,
            "label_column": record.label_column,
            "name": record.filename,  # blobs are named by hash: messages use the upload's name
        }

    request = {
        "kind": "job",
        "model": str(blobs.path(model.sha256)),
        "data": dataset(data),
        "eval_data": dataset(eval_data) if eval_data else None,
        "config": job.config,
        "batch_size": settings.batch_size,
        "device": settings.device,
        "max_parameters": settings.max_parameters,
        "out_dir": str(out_dir),
    }
    return request, names
