"""The checks a job submission goes through, from the request to its queued row.

In order: its `Idempotency-Key` (a retry answers with the job the key created; see
`service.idempotency`), the uploads exist and are the tenant's, the model has been inspected
(409 `model_not_ready` until then), the request fits its model and data and the server's
limits (404, 422), the tenant's work in flight and storage (429, 507), and the row is written
only while its uploads still exist, with its key completed in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from jobs.blobs import BlobStore
from jobs.datasets import DatasetFileError, DatasetFormat, DatasetInfo, check_fits_model
from jobs.idempotency import Claim, ClaimLost, Remembered
from jobs.job_config import JobConfig, Metric, resolve_metric
from jobs.job_table import UploadGone
from jobs.queue import Queue
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.settings import Settings
from jobs.states import ModelStatus
from jobs.store import JobStore
from service import idempotency
from service.errors import Conflict, InvalidJob, InvalidModel, NotFound, broker_unavailable
from service.idempotency import JOB_IN_USE_RETRY_AFTER
from service.job_schemas import JobCreate
from service.limits import check_jobs_in_flight, check_storage
from service.mlflow_checks import with_mlflow
from service.webhook_checks import with_webhook

log = logging.getLogger(__name__)

SUBMIT_ROUTE = "POST /v1/jobs"
# A model's inspection takes seconds once a worker is free.
MODEL_NOT_READY_RETRY_AFTER = 5


def submit(
    body: JobCreate,
    tenant: str,
    store: JobStore,
    blobs: BlobStore,
    queue: Queue,
    settings: Settings,
    key: str | None = None,
) -> tuple[JobRecord, Remembered | None]:
    """Check, write and send a job; with an idempotency `key` used before for this very
    request, the job that request created and what it answered (nothing is sent again)."""
    request = idempotency.fingerprint(SUBMIT_ROUTE, body.model_dump(mode="json"))
    outcome = idempotency.begin(store, settings, tenant, key, request, JOB_IN_USE_RETRY_AFTER)
    if isinstance(outcome, Remembered):
        job_id = idempotency.replayed_id(key or "", outcome, "job")
        job = store.jobs.get(tenant, job_id)
        if job is None:
            raise idempotency.gone("job", job_id)
        return job, outcome
    claim = None if outcome is None else replace(outcome, status_code=202)
    try:
        job = add_checked_job(body, tenant, store, blobs, settings, claim)
        return _send(job, tenant, store, queue), None
    except ClaimLost:
        raise idempotency.IdempotencyKeyInUse(key or "", JOB_IN_USE_RETRY_AFTER) from None
    except BaseException:
        idempotency.release(store, claim)
        raise


def _send(job: JobRecord, tenant: str, store: JobStore, queue: Queue) -> JobRecord:
    try:
        queue.enqueue_job(job.id)
    except Exception as exc:
        # A queued row no message will ever start would sit `queued` forever; one that a
        # worker already started (on another tenant's message) is under way: keep it.
        if store.jobs.withdraw(tenant, job.id):
            raise broker_unavailable(exc) from exc
        log.warning("job %s: its message failed (%s) but a worker had started it", job.id, exc)
        return store.jobs.get(tenant, job.id) or job
    # The job's first line: the request's ID meets its job ID here.
    log.info("job %s queued", job.id, extra={"job_id": job.id})
    return job


def add_checked_job(
    body: JobCreate,
    tenant: str,
    store: JobStore,
    blobs: BlobStore,
    settings: Settings,
    claim: Claim | None = None,
) -> JobRecord:
    """Check a submission and write its queued job, completing `claim` (its idempotency
    key) in the same step; the caller sends the message."""
    model, dataset, eval_dataset = _lookup(store, tenant, body)
    config = checked_config(body, model, dataset, eval_dataset, settings)
    stored = with_webhook(config.to_json(), body.webhook, tenant, settings)
    stored = with_mlflow(stored, body.mlflow, settings)
    # After the request's own errors (404, 422), which tell the client more.
    check_jobs_in_flight(store, settings, tenant)
    # What the job will publish is unknown yet: refuse only a tenant already at its quota.
    check_storage(store, blobs, settings, tenant, 0)
    try:
        return store.jobs.add(
            tenant,
            model.id,
            dataset.id,
            body.eval_dataset_id,
            stored,
            verify_uploads=True,
            claim=claim,
        )
    except UploadGone as exc:
        raise NotFound(
            f"upload {exc.upload_id} was deleted while this job was being submitted"
        ) from exc


def _lookup(
    store: JobStore, tenant: str, body: JobCreate
) -> tuple[ModelRecord, DatasetRecord, DatasetRecord | None]:
    model = store.models.get(tenant, body.model_id)
    if model is None:
        raise NotFound(f"model {body.model_id!r} not found")
    dataset = store.datasets.get(tenant, body.dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {body.dataset_id!r} not found")
    eval_dataset = None
    if body.eval_dataset_id is not None:
        eval_dataset = store.datasets.get(tenant, body.eval_dataset_id)
        if eval_dataset is None:
            raise NotFound(f"evaluation dataset {body.eval_dataset_id!r} not found")
    return model, dataset, eval_dataset


def _named(kind: str, upload: ModelRecord | DatasetRecord) -> str:
    """An upload as messages name it: by ID and by the file name it was sent with."""
    return f"{kind} {upload.id!r} ({upload.filename})"


def _model_input_shape(model: ModelRecord) -> list[int | None] | None:
    """The first input's declared shape (None for dynamic dims), once a worker has read it."""
    if model.status is not ModelStatus.READY or not model.info:
        return None
    inputs = model.info.get("inputs")
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
        return None
    shape = inputs[0].get("shape")
    if not isinstance(shape, list) or not all(d is None or isinstance(d, int) for d in shape):
        return None
    return shape


def _check_fits(model: ModelRecord, datasets: list[DatasetRecord]) -> None:
    shape = _model_input_shape(model)
    if shape is None:
        return  # not inspected yet: the worker checks again before it runs
    for ds in datasets:
        # check_fits_model reads the per-sample shape only; the record keeps no dtype.
        info = DatasetInfo(
            format=DatasetFormat(ds.format),
            samples=ds.samples,
            x_shape=list(ds.x_shape),
            has_labels=ds.has_labels,
            x_dtype="unknown",
            y_kind=None,
            label_column=ds.label_column,
        )
        try:
            check_fits_model(info, shape)
        except DatasetFileError as exc:
            raise DatasetFileError(
                f"{_named('dataset', ds)} does not fit {_named('model', model)}: {exc}"
            ) from exc


def _resolve_metric(body: JobCreate, evaluation: DatasetRecord) -> Metric:
    try:
        return resolve_metric(body.metric, evaluation.has_labels)
    except ValueError:
        raise InvalidJob(
            f"metric {str(body.metric)!r} compares predictions with labels, and the evaluation "
            f"{_named('dataset', evaluation)} has none: upload it with labels (array y, or "
            "label_column for CSV) or use metric 'agreement'"
        ) from None


def checked_config(
    body: JobCreate,
    model: ModelRecord,
    dataset: DatasetRecord,
    eval_dataset: DatasetRecord | None,
    settings: Settings,
) -> JobConfig:
    """Check the request against its records and settings; the config the worker will run."""
    if body.thresholds is not None and len(body.thresholds) > settings.max_thresholds:
        raise InvalidJob(
            f"{len(body.thresholds)} thresholds given; this server runs at most "
            f"{settings.max_thresholds} per job (DEADWEIGHT_MAX_THRESHOLDS)"
        )
    if model.status is ModelStatus.INVALID:
        raise InvalidModel(
            f"{_named('model', model)} cannot be pruned: {model.error or 'it failed inspection'}"
        )
    if model.status is ModelStatus.PENDING:
        # Refused rather than queued unchecked: the fit between model and data is known only
        # once a worker has read the graph, and a job that fails on it later is far from its
        # cause. Clients wait and retry (the Python client does).
        raise Conflict(
            f"{_named('model', model)} is still being inspected (status pending), so this job "
            "cannot be checked against it yet; retry when GET /v1/models/"
            f"{model.id} says status ready (usually within seconds)",
            code="model_not_ready",
            headers={"Retry-After": str(MODEL_NOT_READY_RETRY_AFTER)},
        )
    _check_fits(model, [d for d in (dataset, eval_dataset) if d is not None])
    return JobConfig(
        criterion=body.resolved_criterion,
        thresholds=None if body.thresholds is None else tuple(t.spec() for t in body.thresholds),
        compensate=body.compensate,  # a boolean became mean/none
        allocation=body.allocation,
        recovery=None if body.recovery is None else body.recovery.spec(),
        search=body.search,
        seed=body.seed,
        # Resolved here, so results never depend on a later default.
        metric=_resolve_metric(body, eval_dataset or dataset),
        max_metric_drop=body.max_metric_drop,
        formats=tuple(body.formats),
        max_latency_ms=body.max_latency_ms,
    )
