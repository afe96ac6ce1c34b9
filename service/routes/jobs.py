"""Pruning jobs: submit, poll, list, cancel, delete, and the files a finished job published."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from jobs.blobs import BlobStore
from jobs.datasets import DatasetFormat, DatasetInfo, InvalidDataset, check_fits_model
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.settings import Settings
from jobs.states import TERMINAL_STATUSES, JobStatus, ModelStatus
from jobs.store import JobStore, UploadGone
from service.deps import BlobsDep, OwnedJob, QueueDep, SettingsDep, StoreDep, TenantDep
from service.errors import (
    Conflict,
    NotFound,
    Unprocessable,
    broker_unavailable,
    error_responses,
)
from service.file_responses import JobFileResponse
from service.limits import check_jobs_in_flight, check_storage, freeing_space
from service.schemas import (
    LABELLED_METRICS,
    ArtifactPublic,
    JobCreate,
    JobPublic,
    JobsPublic,
    Metric,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

RESULTS_FILE = "results.json"
STATS_FILE = "stats.json"
_JSON_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}}, "description": "the published JSON file"}
}


# -- submission -----------------------------------------------------------------------------
def _lookup(
    store: JobStore, tenant: str, body: JobCreate
) -> tuple[ModelRecord, DatasetRecord, DatasetRecord | None]:
    model = store.get_model(tenant, body.model_id)
    if model is None:
        raise NotFound(f"model {body.model_id!r} not found")
    dataset = store.get_dataset(tenant, body.dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {body.dataset_id!r} not found")
    eval_dataset = None
    if body.eval_dataset_id is not None:
        eval_dataset = store.get_dataset(tenant, body.eval_dataset_id)
        if eval_dataset is None:
            raise NotFound(f"evaluation dataset {body.eval_dataset_id!r} not found")
    return model, dataset, eval_dataset


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
        except InvalidDataset as exc:
            raise InvalidDataset(
                f"dataset {ds.id!r} does not fit model {model.id!r}: {exc}"
            ) from exc


def _resolve_metric(body: JobCreate, evaluation: DatasetRecord) -> Metric:
    if body.metric is None:
        return Metric.ACCURACY if evaluation.has_labels else Metric.AGREEMENT
    if body.metric in LABELLED_METRICS and not evaluation.has_labels:
        raise Unprocessable(
            f"metric {body.metric.value!r} compares predictions with labels, and the evaluation "
            f"dataset {evaluation.id!r} has none: upload it with labels (array y, or "
            "label_column for CSV) or use metric 'agreement'",
            code="invalid_job",
        )
    return body.metric


def job_config(
    body: JobCreate,
    model: ModelRecord,
    dataset: DatasetRecord,
    eval_dataset: DatasetRecord | None,
    settings: Settings,
) -> dict[str, Any]:
    """Check the request against its records and settings; the config the worker will run."""
    if body.thresholds is not None and len(body.thresholds) > settings.max_thresholds:
        raise Unprocessable(
            f"{len(body.thresholds)} thresholds given; this server runs at most "
            f"{settings.max_thresholds} per job (DEADWEIGHT_MAX_THRESHOLDS)",
            code="invalid_job",
        )
    if model.status is ModelStatus.INVALID:
        raise Unprocessable(
            f"model {model.id!r} cannot be pruned: {model.error or 'it failed inspection'}",
            code="invalid_model",
        )
    _check_fits(model, [d for d in (dataset, eval_dataset) if d is not None])
    metric = _resolve_metric(body, eval_dataset or dataset)
    thresholds = None if body.thresholds is None else [t.as_config() for t in body.thresholds]
    return {
        "criterion": body.resolved_criterion.value,
        "thresholds": thresholds,  # None: the engine's default sweep
        "compensate": body.compensate.value,  # a boolean became mean/none
        "allocation": body.allocation.value,
        "recovery": None if body.recovery is None else body.recovery.model_dump(),
        "search": body.search,
        "seed": body.seed,
        "metric": metric.value,  # resolved here, so results never depend on a later default
        "max_metric_drop": body.max_metric_drop,
    }


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(404, 422, 429, 503, 507),
)
def submit_job(
    body: JobCreate,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    queue: QueueDep,
    settings: SettingsDep,
) -> JobPublic:
    """Submit a pruning job; poll GET /v1/jobs/{id} until it has finished."""
    model, dataset, eval_dataset = _lookup(store, tenant, body)
    config = job_config(body, model, dataset, eval_dataset, settings)
    # After the request's own errors (404, 422), which tell the client more.
    check_jobs_in_flight(store, settings, tenant)
    # What the job will publish is unknown yet: refuse only a tenant already at its quota.
    check_storage(store, blobs, settings, tenant, 0)
    try:
        job = store.add_job(
            tenant, model.id, dataset.id, body.eval_dataset_id, config, verify_uploads=True
        )
    except UploadGone as exc:
        raise NotFound(f"upload {exc} was deleted while this job was being submitted") from exc
    try:
        queue.enqueue_job(job.id)
    except Exception as exc:
        # A queued row no message will ever start would sit `queued` forever; one that a
        # worker already started (on another tenant's message) is under way: keep it.
        if store.withdraw_job(tenant, job.id):
            raise broker_unavailable(exc) from exc
        log.warning("job %s: its message failed (%s) but a worker had started it", job.id, exc)
        job = store.get_job(tenant, job.id) or job
    return JobPublic.from_record(job)


# -- the job record -------------------------------------------------------------------------
@router.get("", response_model=JobsPublic)
def list_jobs(
    tenant: TenantDep,
    store: StoreDep,
    limit: int = Query(50, ge=1, le=200, description="page size"),
    # Bounded so that SQL's 64-bit integers always hold it.
    offset: int = Query(0, ge=0, le=2**31, description="jobs to skip, newest first"),
) -> JobsPublic:
    """The caller's jobs, newest first, one page at a time."""
    page, total = store.list_jobs(tenant, limit, offset)
    return JobsPublic(data=[JobPublic.from_record(j) for j in page], count=total)


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
def get_job(job: OwnedJob) -> JobPublic:
    """The job's status, progress and timestamps."""
    return JobPublic.from_record(job)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404))
def cancel_job(job: OwnedJob, tenant: TenantDep, store: StoreDep) -> JobPublic:
    """Cancel a queued or running job; a finished job is returned unchanged."""
    updated = store.request_cancel(tenant, job.id)
    if updated is None:  # deleted in between
        raise NotFound(f"job {job.id!r} not found")
    return JobPublic.from_record(updated)


@router.delete("/{job_id}", status_code=204, responses=error_responses(404, 409))
def delete_job(job: OwnedJob, tenant: TenantDep, store: StoreDep, blobs: BlobsDep) -> None:
    """Delete a finished job and every file it published."""
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(
            f"job {job.id!r} is {job.status.value}; cancel it first "
            f"(POST /v1/jobs/{job.id}/cancel), then delete it once it has stopped",
            code="job_active",
        )

    def delete() -> None:
        store.delete_job(tenant, job.id)
        blobs.remove_job_dir(job.id)

    freeing_space(blobs, delete)


# -- published files ------------------------------------------------------------------------
def _not_ready(job: JobRecord) -> Conflict:
    if job.status is JobStatus.FAILED:
        why = f"job {job.id!r} failed: {job.error or 'no reason recorded'}"
    elif job.status is JobStatus.RUNNING:
        why = f"job {job.id!r} is running ({job.stage}, {job.fraction:.0%})"
    else:
        why = f"job {job.id!r} is {job.status.value}"
    return Conflict(f"{why}; results exist only once a job has succeeded", code="not_ready")


def _published_json(job: JobRecord, blobs: BlobStore, name: str) -> FileResponse:
    if job.status is not JobStatus.SUCCEEDED:
        raise _not_ready(job)
    path = blobs.artifact_path(job.id, name)
    if path is None:
        raise NotFound(f"job {job.id!r} published no {name}")
    # Streamed as written by the worker: the stats of a wide model can run to many MB.
    return JobFileResponse(path, media_type="application/json")


@router.get(
    "/{job_id}/results",
    response_class=FileResponse,
    responses={**_JSON_FILE, **error_responses(404, 409)},
)
def get_results(job: OwnedJob, blobs: BlobsDep) -> FileResponse:
    """The sweep table: baseline, candidates, Pareto front and recommendation."""
    return _published_json(job, blobs, RESULTS_FILE)


@router.get(
    "/{job_id}/stats",
    response_class=FileResponse,
    responses={**_JSON_FILE, **error_responses(404, 409)},
)
def get_stats(job: OwnedJob, blobs: BlobsDep) -> FileResponse:
    """Per-neuron activation statistics of every prunable layer."""
    return _published_json(job, blobs, STATS_FILE)


@router.get(
    "/{job_id}/artifacts", response_model=list[ArtifactPublic], responses=error_responses(404)
)
def list_artifacts(job: OwnedJob, blobs: BlobsDep) -> list[ArtifactPublic]:
    """The files the job has published so far."""
    return [ArtifactPublic.from_info(a) for a in blobs.list_artifacts(job.id)]


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **error_responses(404)},
)
def download_artifact(job: OwnedJob, blobs: BlobsDep, name: str) -> FileResponse:
    """Download one published file (a pruned model, a table, a plot)."""
    # Only names in the job's listing resolve: `..`, separators and absolute paths miss.
    path = blobs.artifact_path(job.id, name)
    info = next((a for a in blobs.list_artifacts(job.id) if a.name == name), None)
    if path is None or info is None:
        raise NotFound(f"job {job.id!r} has no artifact {name!r}")
    return JobFileResponse(path, media_type=info.media_type, filename=info.name)
