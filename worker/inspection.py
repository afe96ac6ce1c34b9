"""Inspecting one uploaded model (`pending -> ready | invalid`); called by its task body.

The safe reader runs in the sandbox (`worker.sandbox`), under the job's memory limit and the
inspection's own time limit; what it found, or why the model is refused, is recorded on the
model. Store calls are retried through outages (`worker.store_retry`). With an S3 store the
model is downloaded into the inspection's own folder first (`BlobStore.fetch`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from jobs.blobs import BlobStore
from jobs.job_table import UploadGone
from jobs.settings import Settings
from jobs.states import ModelStatus
from jobs.store import JobStore
from worker.protocol import InspectRequest
from worker.sandbox import EngineTimedOut, Limits, SandboxFailure, run_sandboxed
from worker.store_retry import retry, store_patience
from worker.user_errors import log_failure, scrub


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
        lambda: store.scheduling.claim_fair_inspection(model_id, claims),
        "claim an inspection",
        patience,
    )
    if record is None:
        return  # nothing pending: inspected by another delivery, or deleted
    model_id = record.id
    blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".inspect-{model_id}-", dir=blobs.tmp_dir))
    model_path = record.filename  # until it is fetched (messages name the upload anyway)
    limit = settings.inspection_time_limit
    status, info, error = ModelStatus.READY, None, None
    try:
        model_path = str(blobs.fetch(record.sha256, workdir / "inputs", record.filename))
        info = run_sandboxed(
            InspectRequest(model=model_path, max_parameters=settings.max_parameters),
            workdir,
            Limits(
                settings.job_memory_bytes,
                limit * max(1, os.cpu_count() or 1),
                wall_seconds=limit,
                nice=settings.engine_nice,
            ),
        )
    except EngineTimedOut:
        status = ModelStatus.INVALID
        error = (
            f"the model took longer than {limit} s to inspect "
            "(DEADWEIGHT_INSPECTION_TIME_LIMIT); a model this costly to read is refused"
        )
    except UploadGone as exc:  # its file is missing from an S3 store, or not its bytes
        status, error = ModelStatus.INVALID, str(exc)
    except SandboxFailure as exc:
        log_failure(f"model {model_id}", exc)
        status = ModelStatus.INVALID
        error = scrub(str(exc), {model_path: record.filename}, blobs.root)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    retry(
        lambda: store.models.set_inspected(model_id, status, info, error),
        "record the inspection",
        patience,
    )
