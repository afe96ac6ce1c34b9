"""Running one job to its end state; called by the task body (`worker.tasks.run_job`).

    claim the fairest queued job with a lease (jobs.scheduling, jobs.lifecycle)
    -> heartbeat (worker.lease)
    -> the engine, sandboxed (worker.sandbox -> worker.engine_process), writing into a
       hidden folder; progress, cancellation, lease and output caps watched meanwhile
    -> MLflow, for jobs that ask: one run, its IDs into results.json (worker.mlflow_tracking)
    -> publish: manifest, rename into place, or upload to S3 (worker.publish)
    -> record the end state, conditional on the attempt (worker.publish)

A second delivery of the same message finds the job no longer queued and does nothing. An
attempt that finds its job's result set already published (its predecessor died between the
rename and recording success) records `succeeded` from it without running the engine again.

Outages of the job store cost nothing: while the database cannot be reached the engine
keeps running (`worker.lease`), and the reads at the start and the final write are retried
with backoff (`worker.store_retry`). Output size and free disk are watched by
`worker.output_guard`.

Errors a user sees are stable messages: an engine's typed refusal keeps its reason (with
paths inside the data directory replaced by upload names), anything unexpected becomes
an incident ID whose details are in this worker's log (`worker.user_errors`).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket

from celery.exceptions import SoftTimeLimitExceeded

from jobs.blobs import AttemptDirs, BlobStore
from jobs.disk_space import is_disk_full
from jobs.job_table import UploadGone
from jobs.logging_setup import log_fields
from jobs.object_store import STORE_ERRORS, is_outage
from jobs.records import DatasetRecord, JobRecord
from jobs.settings import Settings
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.usage import quota_left
from worker.job_metrics import StageClock, push_job_metrics
from worker.lease import Heartbeat, JobCancelled, LeaseLost, throttled_cancel, throttled_progress
from worker.mlflow_tracking import track_in_mlflow
from worker.output_guard import OutputGuard, OutputRefused, disk_full_message
from worker.protocol import DatasetSpec, JobRequest
from worker.publish import JobOutcome, publish, record_outcome
from worker.sandbox import (
    EngineDiskFull,
    EngineFileTooLarge,
    Limits,
    SandboxFailure,
    run_sandboxed,
)
from worker.store_retry import retry, store_patience
from worker.user_errors import incident_message, log_failure, scrub

log = logging.getLogger("deadweight.worker")

BLOB_STORE_DOWN = (
    "the blob store (S3) could not be reached while the job ran; submit the job again "
    "(the operator can find the details in the worker log)"
)


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
        lambda: store.scheduling.start_fair_job(
            job_id, owner=owner, lease_seconds=settings.lease_seconds
        ),
        "start the job",
        patience,
    )
    if job is None:
        log.info("job %s is not queued any more, nor any other; nothing to do", job_id)
        return
    if job.id != job_id:
        log.info("message for job %s: starting job %s, whose tenant waits longer", job_id, job.id)
    with log_fields(job_id=job.id, tenant=job.tenant, attempt=job.attempts):
        log.info("job %s attempt %d started", job.id, job.attempts)
        heartbeat = Heartbeat(store.lifecycle, job.id, job.attempts, settings.lease_seconds)
        heartbeat.start()
        clock = StageClock()
        try:
            outcome = _attempt_outcome(job, store, blobs, settings, heartbeat, clock)
            recorded = outcome is not None and record_outcome(
                store, blobs, job.id, job.attempts, outcome, patience
            )
            if outcome is not None and recorded:
                push_job_metrics(store, blobs, job, outcome[0], clock)
            log_outcome(job, outcome, recorded)
        finally:
            heartbeat.stop()


def _attempt_outcome(
    job: JobRecord,
    store: JobStore,
    blobs: BlobStore,
    settings: Settings,
    heartbeat: Heartbeat,
    clock: StageClock,
) -> JobOutcome | None:
    """`_run_attempt`'s outcome, an S3 store's failure included (wherever it called it)."""
    try:
        return _run_attempt(job, store, blobs, settings, heartbeat, clock)
    except STORE_ERRORS as exc:
        if not is_outage(exc):  # a refusal (credentials, a missing bucket): the operator's
            return (JobStatus.FAILED, incident_message(job.id, exc))
        # An S3 store that stayed unreachable through boto3's retries.
        log.error("job %s: the blob store could not be reached: %s", job.id, exc)
        return (JobStatus.FAILED, BLOB_STORE_DOWN)


def log_outcome(job: JobRecord, outcome: JobOutcome | None, recorded: bool) -> None:
    """The job's end state as recorded (Celery's own line says only that the task returned)."""
    if outcome is None:
        log.warning(
            "job %s attempt %d ended without an outcome: its lease is gone", job.id, job.attempts
        )
    elif not recorded:
        log.warning(
            "job %s attempt %d: its end state (%s) was not recorded; the job was cancelled, "
            "deleted or taken over meanwhile",
            job.id,
            job.attempts,
            outcome[0].value,
        )
    else:
        status, error = outcome
        level = logging.INFO if status is JobStatus.SUCCEEDED else logging.WARNING
        log.log(level, "job %s %s%s", job.id, status.value, f": {error}" if error else "")


def _run_attempt(
    job: JobRecord,
    store: JobStore,
    blobs: BlobStore,
    settings: Settings,
    heartbeat: Heartbeat,
    clock: StageClock,
) -> JobOutcome | None:
    """Run the engine and publish; the outcome to record (None: nothing, the lease is gone).

    Every folder this attempt made is gone when it returns: a client that sees the end
    state finds no partial files.
    """
    job_id, attempt = job.id, job.attempts
    # What earlier attempts whose worker died left is this attempt's to clear.
    if blobs.clear_unpublished(job_id):
        log.warning("job %s: found its published result set; recording it", job_id)
        return (JobStatus.SUCCEEDED, None)
    folders = blobs.attempt_dirs(job_id, attempt)
    staging, workdir = folders.staging, folders.work
    patience = store_patience(settings)
    left = retry(
        lambda: quota_left(store.usage, blobs, job.tenant, settings.tenant_storage_bytes),
        "read the tenant's storage",
        patience,
    )
    guard = OutputGuard(settings, staging, blobs.root, quota_left=left)
    paths: dict[str, str] = {}
    try:
        staging.mkdir(parents=True)
        guard.check()
        request, paths = _job_request(job, store, blobs, settings, folders, patience)
        run_sandboxed(
            request,
            workdir,
            Limits.for_job(
                settings.job_memory_bytes,
                settings.job_time_limit,
                settings.job_output_bytes,
                nice=settings.engine_nice,
            ),
            on_progress=clock.watching(throttled_progress(store.lifecycle, job_id, attempt)),
            watches=(
                heartbeat.check,
                throttled_cancel(store.lifecycle, job_id, attempt),
                guard.throttled(),
            ),
        )
        shutil.rmtree(workdir, ignore_errors=True)  # gone before success is visible
        # Before the manifest: the run's IDs, or why there is none, go into results.json.
        track_in_mlflow(
            job,
            settings,
            staging,
            watches=(heartbeat.check, throttled_cancel(store.lifecycle, job_id, attempt)),
        )
        return publish(store, blobs, job_id, attempt, settings, staging, guard)
    except LeaseLost:
        log.warning("job %s attempt %d: its lease is gone; recording nothing", job_id, attempt)
        return None
    except JobCancelled:
        return (JobStatus.CANCELLED, "cancelled by the client")
    except OutputRefused as exc:
        return (JobStatus.FAILED, str(exc))
    except EngineDiskFull:
        return (JobStatus.FAILED, disk_full_message(settings))
    except EngineFileTooLarge:
        return (JobStatus.FAILED, guard.over_cap())
    except (SandboxFailure, UploadGone) as exc:
        log_failure(f"job {job_id}", exc)
        # A write that failed for lack of space or past the output cap shows as whatever
        # the engine made of it (often an internal error): the folders tell what it was.
        explained = guard.explain_failure()
        return (JobStatus.FAILED, explained or scrub(str(exc), paths, blobs.root))
    except SoftTimeLimitExceeded:
        limit = settings.job_soft_time_limit
        return (JobStatus.FAILED, f"the job ran past its time limit ({limit} s)")
    except STORE_ERRORS:
        # `_attempt_outcome`'s, as the S3 calls before `try`; first: botocore's timeouts
        # are OSErrors too, and an outage is no incident.
        raise
    except OSError as exc:
        if is_disk_full(exc):
            return (JobStatus.FAILED, disk_full_message(settings))
        return (JobStatus.FAILED, incident_message(job_id, exc))
    except Exception as exc:
        return (JobStatus.FAILED, incident_message(job_id, exc))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _job_request(
    job: JobRecord,
    store: JobStore,
    blobs: BlobStore,
    settings: Settings,
    folders: AttemptDirs,
    patience: float,
) -> tuple[JobRequest, dict[str, str]]:
    """What the sandboxed engine needs (file paths and settings, no store, no secrets), and
    each upload's path with its name, to keep paths out of messages. With an S3 store the
    uploads are downloaded into the attempt's working folder (removed with it).

    Raises:
        UploadGone: the job's model or dataset was deleted, or (S3) its file is missing
            or not the bytes uploaded.
    """
    model = retry(lambda: store.models.get_any_tenant(job.model_id), "read", patience)
    data = retry(lambda: store.datasets.get_any_tenant(job.dataset_id), "read", patience)
    if model is None or data is None:
        raise UploadGone("the job's model or dataset was deleted before it ran")
    eval_id = job.eval_dataset_id
    eval_data = (
        retry(lambda: store.datasets.get_any_tenant(eval_id), "read", patience) if eval_id else None
    )
    inputs = folders.work / "inputs"
    model_path = str(blobs.fetch(model.sha256, inputs, model.filename))
    names = {model_path: model.filename}

    def dataset(record: DatasetRecord) -> DatasetSpec:
        path = str(blobs.fetch(record.sha256, inputs, record.filename))
        names[path] = record.filename
        # Blobs are named by hash: messages use the upload's name.
        return DatasetSpec(
            path=path, format=record.format, label_column=record.label_column, name=record.filename
        )

    request = JobRequest(
        model=model_path,
        data=dataset(data),
        eval_data=dataset(eval_data) if eval_data else None,
        config=job.job_config(),  # an unreadable stored config is an incident
        batch_size=settings.batch_size,
        device=settings.device,
        max_parameters=settings.max_parameters,
        measure_latency=settings.measure_latency,
        out_dir=str(folders.staging),
    )
    return request, names
