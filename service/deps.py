"""Dependencies: the app's clients (built in `lifespan`), the caller's tenant, owned records.

The tenant comes from the API key (`service.auth.get_tenant`).

`OwnedJob`, `OwnedModel` and `OwnedDataset` answer 404 themselves — for an ID that does not
exist and for one of another tenant alike — so routes never repeat the lookup.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in its thread pool, a
hop (and a wait for a thread on a busy machine) per dependency per request. The getters only
read `app.state`; the record lookups send their one blocking database read to the thread pool
themselves, so a request that polls a job makes a single hop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from jobs.blobs import BlobStore
from jobs.queue import Queue
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.settings import Settings
from jobs.store import JobStore
from service.auth import get_tenant
from service.errors import NotFound
from service.limits import UploadSlots


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


async def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


async def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


async def get_upload_slots(request: Request) -> UploadSlots:
    slots: UploadSlots = request.app.state.upload_slots
    return slots


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
QueueDep = Annotated[Queue, Depends(get_queue)]
TenantDep = Annotated[str, Depends(get_tenant)]
UploadSlotsDep = Annotated[UploadSlots, Depends(get_upload_slots)]

JobId = Annotated[str, Path(description="a job ID from POST /v1/jobs")]
ModelId = Annotated[str, Path(description="a model ID from POST /v1/models")]
DatasetId = Annotated[str, Path(description="a dataset ID from POST /v1/datasets")]


async def owned_job(job_id: JobId, tenant: TenantDep, request: Request) -> JobRecord:
    # The store from `request`, not `StoreDep`: one dependency less to solve on the route
    # clients poll.
    store: JobStore = request.app.state.store
    job = await run_in_threadpool(store.jobs.get, tenant, job_id)
    if job is None:
        raise NotFound(f"job {job_id!r} not found")
    return job


async def owned_model(model_id: ModelId, tenant: TenantDep, store: StoreDep) -> ModelRecord:
    model = await run_in_threadpool(store.models.get, tenant, model_id)
    if model is None:
        raise NotFound(f"model {model_id!r} not found")
    return model


async def owned_dataset(
    dataset_id: DatasetId, tenant: TenantDep, store: StoreDep
) -> DatasetRecord:
    dataset = await run_in_threadpool(store.datasets.get, tenant, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id!r} not found")
    return dataset


OwnedJob = Annotated[JobRecord, Depends(owned_job)]
OwnedModel = Annotated[ModelRecord, Depends(owned_model)]
OwnedDataset = Annotated[DatasetRecord, Depends(owned_dataset)]
