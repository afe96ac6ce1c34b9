"""Dataset uploads: validated in full (NumPy only) in a limited validation process, so a job
never starts on bad data and no file can exhaust the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from jobs.validation import validate_upload
from service.deps import BlobsDep, OwnedDataset, SettingsDep, StoreDep, TenantDep, UploadSlotsDep
from service.errors import error_responses
from service.multipart import multipart_openapi
from service.schemas import DatasetPublic
from service.upload_cleanup import delete_upload, release_upload
from service.uploads import Upload, UploadTarget, receive_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

LABEL_COLUMN = "label_column"


async def register_dataset(upload: Upload, target: UploadTarget) -> DatasetPublic:
    """Validate every value, then record the dataset; any other outcome releases the upload."""
    store, blobs = target.store, target.blobs
    try:
        info = await validate_upload(
            "dataset",
            blobs.path(upload.sha256),
            upload.filename,
            upload.fields.get(LABEL_COLUMN, "").strip() or None,
            target.settings,
            tenant=target.tenant,
        )
        record = await run_in_threadpool(
            lambda: store.datasets.add(
                target.tenant,
                upload.sha256,
                upload.size,
                upload.filename,
                format=str(info["format"]),
                samples=int(info["samples"]),
                x_shape=[int(n) for n in info["x_shape"]],
                has_labels=bool(info["has_labels"]),
                label_column=info["label_column"],
                hold_id=upload.hold_id,
            )
        )
    except BaseException:
        # DatasetFileError (422) included: the refused file must not stay behind.
        await run_in_threadpool(release_upload, store, blobs, upload)
        raise
    return DatasetPublic.from_record(record)


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses=error_responses(400, 408, 413, 415, 422, 429, 507),
    openapi_extra=multipart_openapi({LABEL_COLUMN: "CSV only: the column holding the labels"}),
)
async def upload_dataset(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    slots: UploadSlotsDep,
) -> DatasetPublic:
    """Upload a dataset (.npz, .safetensors or .csv, multipart field `file`) and validate it."""
    target = UploadTarget(tenant, store, blobs, settings)
    with slots.take(tenant):
        upload = await receive_upload(request, target, text_fields=frozenset({LABEL_COLUMN}))
        return await register_dataset(upload, target)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_responses(404))
def get_dataset(dataset: OwnedDataset) -> DatasetPublic:
    """The dataset record: format, samples, per-sample shape, labels."""
    return DatasetPublic.from_record(dataset)


@router.delete("/{dataset_id}", status_code=204, responses=error_responses(404, 409))
def delete_dataset(
    dataset: OwnedDataset, tenant: TenantDep, store: StoreDep, blobs: BlobsDep
) -> None:
    """Delete a dataset and, unless another record shares it, its file."""
    delete_upload(store, blobs, tenant, "dataset", dataset.id, dataset.sha256)
