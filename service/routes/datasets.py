"""Dataset uploads: validated in full here (NumPy only), so a job never starts on bad data."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from jobs.blobs import BlobStore
from jobs.datasets import HEAD_BYTES, DatasetInfo, InvalidDataset, detect_format, open_dataset
from jobs.settings import Settings
from jobs.store import JobStore
from service.deps import BlobsDep, OwnedDataset, SettingsDep, StoreDep, TenantDep
from service.errors import Conflict, error_responses
from service.schemas import DatasetPublic
from service.uploads import Upload, discard_blob, multipart_openapi, receive_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

LABEL_COLUMN = "label_column"
# A compressed .npz can decode to far more than its file size; validating it streams every
# byte, so cap the decoded arrays at a multiple of the upload limit.
DECODED_BYTES_PER_UPLOAD_BYTE = 8


def inspect_dataset(
    path: Path, filename: str, label_column: str | None, settings: Settings
) -> DatasetInfo:
    """Detect the format, open the file and check every value (InvalidDataset otherwise)."""
    with path.open("rb") as f:
        fmt = detect_format(filename, f.read(HEAD_BYTES))
    with open_dataset(
        path,
        fmt,
        label_column=label_column,
        max_samples=settings.max_samples,
        name=filename,
        max_bytes=settings.max_upload_bytes * DECODED_BYTES_PER_UPLOAD_BYTE,
    ) as dataset:
        features = math.prod(dataset.info.x_shape)
        if features > settings.max_features:  # before reading every value
            raise InvalidDataset(
                f"{filename} has {features} values per sample; this server takes at most "
                f"{settings.max_features} (DEADWEIGHT_MAX_FEATURES)"
            )
        dataset.validate()
        return dataset.info


def register_dataset(
    upload: Upload, tenant: str, store: JobStore, blobs: BlobStore, settings: Settings
) -> DatasetPublic:
    try:
        info = inspect_dataset(
            blobs.path(upload.sha256),
            upload.filename,
            upload.fields.get(LABEL_COLUMN, "").strip() or None,
            settings,
        )
    except InvalidDataset:
        discard_blob(store, blobs, upload.sha256)
        raise
    record = store.add_dataset(
        tenant,
        upload.sha256,
        upload.size,
        upload.filename,
        format=str(info.format),
        samples=info.samples,
        x_shape=list(info.x_shape),
        has_labels=info.has_labels,
        label_column=info.label_column,
    )
    return DatasetPublic.from_record(record)


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses=error_responses(400, 413, 415, 422),
    openapi_extra=multipart_openapi({LABEL_COLUMN: "CSV only: the column holding the labels"}),
)
async def upload_dataset(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    settings: SettingsDep,
) -> DatasetPublic:
    """Upload a dataset (.npz, .safetensors or .csv, multipart field `file`) and validate it."""
    upload = await receive_upload(
        request, blobs, settings.max_upload_bytes, text_fields=frozenset({LABEL_COLUMN})
    )
    return await run_in_threadpool(register_dataset, upload, tenant, store, blobs, settings)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_responses(404))
def get_dataset(dataset: OwnedDataset) -> DatasetPublic:
    """The dataset record: format, samples, per-sample shape, labels."""
    return DatasetPublic.from_record(dataset)


@router.delete("/{dataset_id}", status_code=204, responses=error_responses(404, 409))
def delete_dataset(
    dataset: OwnedDataset, tenant: TenantDep, store: StoreDep, blobs: BlobsDep
) -> None:
    """Delete a dataset and, unless another record shares it, its file."""
    if store.uploads_in_use_by_jobs(tenant, dataset.id):
        raise Conflict(
            f"dataset {dataset.id!r} is used by a queued or running job; cancel the job first",
            code="in_use",
        )
    store.delete_dataset(tenant, dataset.id)
    discard_blob(store, blobs, dataset.sha256)
