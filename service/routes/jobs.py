"""Pruning jobs: submit, poll, list, cancel, delete, and the files a finished job published."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from jobs.blobs import BlobStore
from jobs.job_config import RESULTS_JSON, STATS_JSON
from jobs.records import JobRecord
from jobs.states import TERMINAL_STATUSES, JobStatus
from service.deps import BlobsDep, OwnedJob, QueueDep, SettingsDep, StoreDep, TenantDep
from service.errors import (
    Conflict,
    NotFound,
    broker_unavailable,
    error_responses,
)
from service.file_responses import JobFileResponse
from service.job_schemas import ArtifactPublic, JobCreate, JobPublic, JobsPublic
from service.limits import freeing_space
from service.submission import add_checked_job

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_JSON_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}}, "description": "the published JSON file"}
}


# -- submission -----------------------------------------------------------------------------
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
    job = add_checked_job(body, tenant, store, blobs, settings)
    try:
        queue.enqueue_job(job.id)
    except Exception as exc:
        # A queued row no message will ever start would sit `queued` forever; one that a
        # worker already started (on another tenant's message) is under way: keep it.
        if store.jobs.withdraw(tenant, job.id):
            raise broker_unavailable(exc) from exc
        log.warning("job %s: its message failed (%s) but a worker had started it", job.id, exc)
        job = store.jobs.get(tenant, job.id) or job
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
    page, total = store.jobs.list(tenant, limit, offset)
    return JobsPublic(data=[JobPublic.from_record(j) for j in page], count=total)


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
async def get_job(job: OwnedJob) -> JobPublic:
    """The job's status, progress and timestamps."""
    # `async`: the record's read is `OwnedJob`'s one hop to the thread pool; the response is
    # built and encoded here, on the event loop, without another (clients poll this route).
    return JobPublic.from_record(job)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404))
def cancel_job(job: OwnedJob, tenant: TenantDep, store: StoreDep) -> JobPublic:
    """Cancel a queued or running job; a finished job is returned unchanged."""
    updated = store.lifecycle.request_cancel(tenant, job.id)
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
    return _published_json(job, blobs, RESULTS_JSON)


@router.get(
    "/{job_id}/stats",
    response_class=FileResponse,
    responses={**_JSON_FILE, **error_responses(404, 409)},
)
def get_stats(job: OwnedJob, blobs: BlobsDep) -> FileResponse:
    """Per-neuron activation statistics of every prunable layer."""
    return _published_json(job, blobs, STATS_JSON)


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
