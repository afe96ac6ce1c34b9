"""Dependencies: the app's clients (built in `lifespan`), the caller's tenant, owned records.

The tenant comes from the API key (`service.auth.get_tenant`).

`OwnedJob`, `OwnedModel` and `OwnedDataset` answer 404 themselves — for an ID that does not
exist and for one of another tenant alike — so routes never repeat the lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from jobs.blobs import BlobStore
from jobs.queue import Queue
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.settings import Settings
from jobs.store import JobStore
from service.auth import get_tenant
from service.errors import NotFound
from service.limits import UploadSlots


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


def get_upload_slots(request: Request) -> UploadSlots:
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


def owned_job(job_id: JobId, tenant: TenantDep, store: StoreDep) -> JobRecord:
    job = store.jobs.get(tenant, job_id)
    if job is None:
        raise NotFound(f"job {job_id!r} not found")
    return job


def owned_model(model_id: ModelId, tenant: TenantDep, store: StoreDep) -> ModelRecord:
    model = store.models.get(tenant, model_id)
    if model is None:
        raise NotFound(f"model {model_id!r} not found")
    return model


def owned_dataset(dataset_id: DatasetId, tenant: TenantDep, store: StoreDep) -> DatasetRecord:
    dataset = store.datasets.get(tenant, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id!r} not found")
    return dataset


OwnedJob = Annotated[JobRecord, Depends(owned_job)]
OwnedModel = Annotated[ModelRecord, Depends(owned_model)]
OwnedDataset = Annotated[DatasetRecord, Depends(owned_dataset)]
