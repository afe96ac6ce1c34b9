"""Running one job or one model inspection against the stores; called by the task bodies.

The engine itself runs in a limited child process (`worker.sandbox`); this side owns the
stores. A job's files are written into a hidden folder of its own and renamed into place
when the run has succeeded, so a client never sees half a result set, and a second
delivery of the same message finds the job no longer queued and does nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from jobs.blobs import BlobStore
from jobs.datasets import InvalidDataset
from jobs.records import DatasetRecord, JobRecord
from jobs.settings import Settings
from jobs.states import JobStatus, ModelStatus
from jobs.store import JobStore
from pruning.errors import Cancelled
from worker.sandbox import Limits, SandboxFailure, run_sandboxed

log = logging.getLogger("deadweight.worker")

PROGRESS_EVERY_S = 0.5

CANCEL_POLL_EVERY_S = 1.0


def execute_inspection(
    model_id: str, store: JobStore, blobs: BlobStore, settings: Settings
) -> None:
    """Read an uploaded model with the safe reader, in the sandbox; record what it holds."""
    record = store.get_model_any_tenant(model_id)
    if record is None:
        return  # deleted before the worker got to it
    blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".inspect-{model_id}-", dir=blobs.tmp_dir))
    try:
        info = run_sandboxed(
            {
                "kind": "inspect",
                "model": str(blobs.path(record.sha256)),
                "max_parameters": settings.max_parameters,
            },
            workdir,
            _limits(settings),
        )
    except SandboxFailure as exc:
        store.set_model_inspected(model_id, ModelStatus.INVALID, None, str(exc))
        return
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    store.set_model_inspected(model_id, ModelStatus.READY, info, None)


def execute_job(job_id: str, store: JobStore, blobs: BlobStore, settings: Settings) -> None:
    """Run a queued job to its end state; a job that is not queued any more is left alone.

    The job's lease is renewed by a heartbeat thread while the engine works; every change
    recorded names this attempt, so a worker whose lease was taken over changes nothing.
    """
    # The lease owner: host and process, named in the reason when a worker is lost.
    owner = f"{socket.gethostname()}:{os.getpid()}"
    job = store.start_job(job_id, owner=owner, lease_seconds=settings.lease_seconds)
    if job is None:
        log.info("job %s is not queued any more; nothing to do", job_id)
        return
    attempt = job.attempts
    final = blobs.job_dir(job_id)
    staging = final.with_name(f".{job_id}.attempt-{attempt}")
    workdir = final.with_name(f".{job_id}.attempt-{attempt}.work")
    # Folders of earlier attempts whose worker died are this attempt's to clear.
    for folder in final.parent.glob(f".{job_id}.attempt-*"):
        shutil.rmtree(folder, ignore_errors=True)
    staging.mkdir(parents=True)
    heartbeat = Heartbeat(store, job_id, attempt, settings.lease_seconds)
    heartbeat.start()

    outcome: tuple[JobStatus, str] | None = None
    try:
        run_sandboxed(
            _job_request(job, store, blobs, settings, staging),
            workdir,
            _limits(settings),
            on_progress=_throttled_progress(store, job_id, attempt),
            should_cancel=_throttled_cancel(store, job_id, attempt, heartbeat),
        )
        shutil.rmtree(workdir, ignore_errors=True)  # gone before success is visible
        _publish(store, job_id, attempt, settings, staging, final)
    except Cancelled:
        outcome = (JobStatus.CANCELLED, "cancelled by the client")
    except (SandboxFailure, InvalidDataset) as exc:
        outcome = (JobStatus.FAILED, str(exc))
    except SoftTimeLimitExceeded:
        limit = settings.job_soft_time_limit
        outcome = (JobStatus.FAILED, f"the job ran past its time limit ({limit} s)")
    except Exception as exc:
        log.exception("job %s failed", job_id)
        outcome = (JobStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        heartbeat.stop()
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    # Recorded after the cleanup: a client that sees the end state finds no partial files.
    if outcome is not None:
        store.finish_job(job_id, *outcome, attempt=attempt)


def _publish(
    store: JobStore, job_id: str, attempt: int, settings: Settings, staging: Path, final: Path
) -> None:
    """Move the result set into place, then record success; exactly once per job.

    The lease is checked first, so an attempt that lost it publishes nothing. The folder is
    renamed, never merged or overwritten: if another attempt already published, this one
    leaves that result alone. A success on record always has its files.
    """
    if not store.renew_lease(job_id, attempt, settings.lease_seconds):
        raise Cancelled("this attempt lost its lease")
    try:
        staging.rename(final)
    except OSError:  # the folder exists: another attempt published it
        log.warning("job %s attempt %d: a result set is already published", job_id, attempt)
        raise Cancelled("already published") from None
    if not store.finish_job(job_id, JobStatus.SUCCEEDED, attempt=attempt):
        shutil.rmtree(final, ignore_errors=True)  # cancelled or taken over meanwhile


class Heartbeat(threading.Thread):
    """Renews a job's lease every third of its length, independent of the engine's work.

    `lost` turns True when a renewal finds the lease gone (reaped, cancelled, deleted):
    the job's engine is then stopped. A database error is retried at the next beat; the
    lease outlives two missed beats.
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int, lease_seconds: int):
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self._store, self._job_id, self._attempt = store, job_id, attempt
        self._lease_seconds = lease_seconds
        self._halt = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self._halt.wait(self._lease_seconds / 3):
            try:
                if not self._store.renew_lease(self._job_id, self._attempt, self._lease_seconds):
                    self.lost = True
                    return
            except Exception:
                log.exception("job %s: lease renewal failed; retrying", self._job_id)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def _limits(settings: Settings) -> Limits:
    return Limits.for_job(settings.job_memory_bytes, settings.job_time_limit)


def _job_request(
    job: JobRecord, store: JobStore, blobs: BlobStore, settings: Settings, out_dir: Path
) -> dict[str, Any]:
    """What the sandboxed engine needs: file paths and settings, no store, no secrets."""
    model = store.get_model_any_tenant(job.model_id)
    data = store.get_dataset_any_tenant(job.dataset_id)
    if model is None or data is None:
        raise InvalidDataset("the job's model or dataset was deleted before it ran")
    eval_data = store.get_dataset_any_tenant(job.eval_dataset_id) if job.eval_dataset_id else None

    def dataset(record: DatasetRecord) -> dict[str, Any]:
        return {
            "path": str(blobs.path(record.sha256)),
            "format": record.format,
            "label_column": record.label_column,
            "name": record.filename,  # blobs are named by hash: messages use the upload's name
        }

    return {
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


def _throttled_progress(store: JobStore, job_id: str, attempt: int) -> Callable[[str, float], None]:
    """Progress goes to the store on a stage change or at most twice a second."""
    last: dict[str, Any] = {"stage": None, "at": 0.0}

    def report(stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != last["stage"] or now - last["at"] >= PROGRESS_EVERY_S or fraction >= 1.0:
            store.set_progress(job_id, stage, round(fraction, 4), attempt=attempt)
            last.update(stage=stage, at=now)

    return report


def _throttled_cancel(
    store: JobStore, job_id: str, attempt: int, heartbeat: Heartbeat
) -> Callable[[], bool]:
    """Asked four times a second; the store is asked at most once a second."""
    last = {"at": 0.0, "value": False}

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - float(last["at"]) >= CANCEL_POLL_EVERY_S:
            last.update(at=now, value=store.is_cancel_requested(job_id, attempt))
        return heartbeat.lost or bool(last["value"])

    return should_cancel
