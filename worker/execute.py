"""Running one job or one model inspection against the stores; called by the task bodies.

The engine itself runs in a limited child process (`worker.sandbox`); this side owns the
stores. A job's files are written into a hidden folder of its own and renamed into place
when the run has succeeded, so a client never sees half a result set, and a second
delivery of the same message finds the job no longer queued and does nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
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
    """Run a queued job to its end state; a job that is not queued any more is left alone."""
    job = store.start_job(job_id)
    if job is None:
        log.info("job %s is not queued any more; nothing to do", job_id)
        return
    final = blobs.job_dir(job_id)
    staging = final.with_name(f".{job_id}.attempt-{job.attempts}")
    workdir = final.with_name(f".{job_id}.attempt-{job.attempts}.work")
    for folder in (staging, workdir):
        shutil.rmtree(folder, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        run_sandboxed(
            _job_request(job, store, blobs, settings, staging),
            workdir,
            _limits(settings),
            on_progress=_throttled_progress(store, job_id),
            should_cancel=_throttled_cancel(store, job_id),
        )
        # Publish first, then record success: a success on record always has its files.
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        if not store.finish_job(job_id, JobStatus.SUCCEEDED):
            shutil.rmtree(final, ignore_errors=True)  # cancelled or taken over meanwhile
    except Cancelled:
        store.finish_job(job_id, JobStatus.CANCELLED, "cancelled by the client")
    except (SandboxFailure, InvalidDataset) as exc:
        store.finish_job(job_id, JobStatus.FAILED, str(exc))
    except SoftTimeLimitExceeded:
        store.finish_job(
            job_id,
            JobStatus.FAILED,
            f"the job ran past its time limit ({settings.job_soft_time_limit} s)",
        )
    except Exception as exc:
        log.exception("job %s failed", job_id)
        store.finish_job(job_id, JobStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


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


def _throttled_progress(store: JobStore, job_id: str) -> Callable[[str, float], None]:
    """Progress goes to the store on a stage change or at most twice a second."""
    last: dict[str, Any] = {"stage": None, "at": 0.0}

    def report(stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != last["stage"] or now - last["at"] >= PROGRESS_EVERY_S or fraction >= 1.0:
            store.set_progress(job_id, stage, round(fraction, 4))
            last.update(stage=stage, at=now)

    return report


def _throttled_cancel(store: JobStore, job_id: str) -> Callable[[], bool]:
    """The engine polls often; the store is asked at most once a second."""
    last = {"at": 0.0, "value": False}

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - float(last["at"]) >= CANCEL_POLL_EVERY_S:
            last.update(at=now, value=store.is_cancel_requested(job_id))
        return bool(last["value"])

    return should_cancel
