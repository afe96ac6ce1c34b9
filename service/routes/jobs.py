"""Pruning jobs: submit, poll, list, cancel, delete, and the files a finished job published."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from jobs.blobs import BlobStore
from jobs.job_config import RESULTS_JSON, STATS_JSON
from jobs.job_table import JobFilters
from jobs.records import JobRecord
from jobs.settings import Settings
from jobs.states import TERMINAL_STATUSES, JobStatus
from service.artifact_responses import published_file
from service.deps import BlobsDep, OwnedJob, QueueDep, SettingsDep, StoreDep, TenantDep
from service.errors import (
    Conflict,
    NotFound,
)
from service.idempotency import IdempotencyKeyHeader, mark_replayed, replayable
from service.job_schemas import ArtifactPublic, JobCreate, JobPublic, JobsPublic
from service.limits import freeing_space
from service.listing import JobStatusFilter, PageDep, parse_choices
from service.openapi_artifacts import artifact_content
from service.openapi_errors import FILE_ERRORS, error_codes
from service.openapi_examples import JOB_CREATE_EXAMPLES
from service.result_schemas import ResultsPublic, StatsPublic
from service.schemas import Schema
from service.submission import submit

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _json_file(model: type[Schema]) -> dict[int | str, dict[str, Any]]:
    # Streamed from the file the worker published, so no response_model: the schema is
    # documented here, and tests/service/test_result_schemas.py checks it against a real job.
    return {200: {"model": model, "description": "the published JSON file"}}


# -- submission -----------------------------------------------------------------------------
@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=error_codes(
        *("not_found", "request_timeout", "payload_too_large", "too_many_requests"),
        *("invalid_request", "invalid_job", "invalid_model", "invalid_dataset"),
        *("broker_unavailable", "quota_exceeded", "storage_full", "blob_store_unavailable"),
        *("invalid_idempotency_key", "idempotency_key_reused", "idempotency_key_in_use"),
        *("model_not_ready", "invalid_webhook", "mlflow_not_configured"),
    )
    | replayable(202),
    openapi_extra={
        "requestBody": {"content": {"application/json": {"examples": JOB_CREATE_EXAMPLES}}}
    },
)
def submit_job(
    body: JobCreate,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    queue: QueueDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    """Submit a pruning job; poll GET /v1/jobs/{id} until it has finished.

    The model must have been inspected (status `ready`): while it is `pending`, the answer is
    409 `model_not_ready` with `Retry-After`; retry once GET /v1/models/{id} says `ready`.
    """
    job, replay = submit(body, tenant, store, blobs, queue, settings, idempotency_key)
    if replay is not None:
        mark_replayed(response, replay)
    return JobPublic.from_record(job)


# -- the job record -------------------------------------------------------------------------
@router.get("", response_model=JobsPublic, responses=error_codes("invalid_filter"))
def list_jobs(
    tenant: TenantDep,
    store: StoreDep,
    page: PageDep,
    status: JobStatusFilter = None,
    model_id: Annotated[
        str | None, Query(max_length=64, description="only jobs on this model")
    ] = None,
    dataset_id: Annotated[
        str | None,
        Query(
            max_length=64, description="only jobs using this dataset (calibration or evaluation)"
        ),
    ] = None,
) -> JobsPublic:
    """The caller's jobs, newest first, one page at a time; `count` counts those that match."""
    filters = JobFilters(parse_choices("status", status, JobStatus), model_id, dataset_id)
    jobs, total = store.jobs.list(tenant, page.limit, page.offset, filters)
    return JobsPublic(data=[JobPublic.from_record(j) for j in jobs], count=total)


@router.get("/{job_id}", response_model=JobPublic, responses=error_codes("not_found"))
async def get_job(job: OwnedJob) -> JobPublic:
    """The job's status, progress and timestamps."""
    # `async`: the record's read is `OwnedJob`'s one hop to the thread pool; the response is
    # built and encoded here, on the event loop, without another (clients poll this route).
    return JobPublic.from_record(job)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=error_codes("not_found"))
def cancel_job(job: OwnedJob, tenant: TenantDep, store: StoreDep) -> JobPublic:
    """Cancel a queued or running job; a finished job is returned unchanged."""
    updated = store.lifecycle.request_cancel(tenant, job.id)
    if updated is None:  # deleted in between
        raise NotFound(f"job {job.id!r} not found")
    return JobPublic.from_record(updated)


@router.delete(
    "/{job_id}",
    status_code=204,
    responses=error_codes("not_found", "job_active", "blob_store_unavailable"),
)
def delete_job(job: OwnedJob, tenant: TenantDep, store: StoreDep, blobs: BlobsDep) -> None:
    """Delete a finished job and every file it published."""
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(
            f"job {job.id!r} is {job.status.value}; cancel it first "
            f"(POST /v1/jobs/{job.id}/cancel), then delete it once it has stopped",
            code="job_active",
        )

    def delete() -> None:
        store.jobs.delete(tenant, job.id)
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


def _published_json(
    request: Request, job: JobRecord, blobs: BlobStore, settings: Settings, name: str
) -> Response:
    if job.status is not JobStatus.SUCCEEDED:
        raise _not_ready(job)
    # Streamed as written by the worker: the stats of a wide model can run to many MB.
    response = published_file(request, blobs, settings, job.id, name, download=False)
    if response is None:
        raise NotFound(f"job {job.id!r} published no {name}")
    return response


@router.get(
    "/{job_id}/results",
    response_class=FileResponse,
    responses={**_json_file(ResultsPublic), **error_codes(*FILE_ERRORS, "not_ready")},
)
def get_results(
    request: Request, job: OwnedJob, blobs: BlobsDep, settings: SettingsDep
) -> Response:
    """The sweep table: baseline, candidates, Pareto front and recommendation."""
    return _published_json(request, job, blobs, settings, RESULTS_JSON)


@router.get(
    "/{job_id}/stats",
    response_class=FileResponse,
    responses={**_json_file(StatsPublic), **error_codes(*FILE_ERRORS, "not_ready")},
)
def get_stats(request: Request, job: OwnedJob, blobs: BlobsDep, settings: SettingsDep) -> Response:
    """Per-neuron activation statistics of every prunable layer."""
    return _published_json(request, job, blobs, settings, STATS_JSON)


@router.get(
    "/{job_id}/artifacts",
    response_model=list[ArtifactPublic],
    responses=error_codes("not_found", "blob_store_unavailable"),
)
def list_artifacts(job: OwnedJob, blobs: BlobsDep) -> list[ArtifactPublic]:
    """The files the job has published so far."""
    return [ArtifactPublic.from_info(a) for a in blobs.list_artifacts(job.id)]


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        **artifact_content(),
        307: {"description": "with DEADWEIGHT_S3_PRESIGNED_DOWNLOADS: the file's presigned URL"},
        **error_codes(*FILE_ERRORS),
    },
)
def download_artifact(
    request: Request, job: OwnedJob, blobs: BlobsDep, settings: SettingsDep, name: str
) -> Response:
    """Download one published file (a pruned model, a table, a plot)."""
    response = published_file(request, blobs, settings, job.id, name, download=True)
    if response is None:
        raise NotFound(f"job {job.id!r} has no artifact {name!r}")
    return response
