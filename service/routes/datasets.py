"""Dataset uploads: validated in full (NumPy only) in a limited validation process, so a job
never starts on bad data and no file can exhaust the API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from jobs.idempotency import Claim, Remembered
from jobs.validation import validate_upload
from service.deps import BlobsDep, OwnedDataset, SettingsDep, StoreDep, TenantDep, UploadSlotsDep
from service.errors import Unprocessable
from service.idempotency import IdempotencyKeyHeader, gone, replayable
from service.label_columns import NO_LABELS, check_label_like, no_labels_flag
from service.listing import PageDep
from service.multipart import multipart_openapi
from service.openapi_errors import UPLOAD_ERRORS, error_codes
from service.schemas import DatasetPublic, DatasetsPublic
from service.upload_cleanup import delete_upload, release_upload
from service.upload_keys import begin_upload, completing, keyed, replayed_upload
from service.uploads import Upload, UploadTarget, discard_local_copy, receive_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

LABEL_COLUMN = "label_column"
_TEXT_FIELDS = frozenset({LABEL_COLUMN, NO_LABELS})


async def register_dataset(
    upload: Upload, target: UploadTarget, claim: Claim | None = None
) -> DatasetPublic:
    """Validate every value, then record the dataset (completing `claim`, its idempotency
    key); any other outcome releases the upload."""
    store, blobs = target.store, target.blobs
    try:
        try:
            info = await _checked_dataset(upload, target)
        finally:
            # Every refusal included: the local copy goes whatever the answer.
            await discard_local_copy(target, upload)
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
                claim=claim,
            )
        )
    except BaseException:
        # DatasetFileError (422) included: the refused file must not stay behind.
        await run_in_threadpool(release_upload, store, blobs, upload)
        raise
    return DatasetPublic.from_record(record)


async def _checked_dataset(upload: Upload, target: UploadTarget) -> dict[str, Any]:
    """The form's label fields and the file's every value, checked; the file's summary.

    Raises:
        Unprocessable / DatasetFileError: refused (422).
    """
    label_column = upload.fields.get(LABEL_COLUMN, "").strip() or None
    no_labels = no_labels_flag(upload.fields.get(NO_LABELS))
    if no_labels and label_column is not None:
        raise Unprocessable(
            f"{upload.filename}: give either {LABEL_COLUMN} (the labels' column) or "
            f"{NO_LABELS}=true (the file has no labels), not both"
        )
    info = await validate_upload(
        "dataset",
        upload.local,
        upload.filename,
        label_column,
        target.settings,
        tenant=target.tenant,
    )
    if info["format"] != "csv" and no_labels:
        raise Unprocessable(
            f"{upload.filename}: {NO_LABELS} is for CSV files only (an .npz or "
            ".safetensors file has labels when it holds y)"
        )
    if info["format"] == "csv" and label_column is None and not no_labels:
        await run_in_threadpool(check_label_like, upload.local, upload.filename)
    return info


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses=error_codes(
        *UPLOAD_ERRORS,
        *("invalid_request", "invalid_dataset", "label_column_required"),
        *("invalid_idempotency_key", "idempotency_key_reused", "idempotency_key_in_use"),
    )
    | replayable(201),
    openapi_extra=multipart_openapi(
        {
            LABEL_COLUMN: "CSV only: the column holding the labels",
            NO_LABELS: "CSV only: true when no column holds labels, though one is named like "
            "them (label, y, target, class); without either, such a CSV is refused",
        }
    ),
)
async def upload_dataset(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    slots: UploadSlotsDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> DatasetPublic:
    """Upload a dataset (.npz, .safetensors or .csv, multipart field `file`) and validate it."""
    target = UploadTarget(tenant, store, blobs, settings)
    with slots.take(tenant):
        claim = await begin_upload(target, idempotency_key, "dataset")
        if isinstance(claim, Remembered):
            dataset_id = await replayed_upload(
                request, target, response, idempotency_key or "", claim, "dataset", _TEXT_FIELDS
            )
            return await _replayed_dataset(target, dataset_id)
        async with keyed(target, claim, idempotency_key):
            upload = await receive_upload(request, target, text_fields=_TEXT_FIELDS)
            return await register_dataset(upload, target, completing(claim, request, upload))


async def _replayed_dataset(target: UploadTarget, dataset_id: str) -> DatasetPublic:
    record = await run_in_threadpool(target.store.datasets.get, target.tenant, dataset_id)
    if record is None:
        raise gone("dataset", dataset_id)
    return DatasetPublic.from_record(record)


@router.get("", response_model=DatasetsPublic)
def list_datasets(tenant: TenantDep, store: StoreDep, page: PageDep) -> DatasetsPublic:
    """The caller's datasets, newest first, one page at a time."""
    datasets, total = store.datasets.list(tenant, page.limit, page.offset)
    return DatasetsPublic(data=[DatasetPublic.from_record(d) for d in datasets], count=total)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_codes("not_found"))
def get_dataset(dataset: OwnedDataset) -> DatasetPublic:
    """The dataset record: format, samples, per-sample shape, labels."""
    return DatasetPublic.from_record(dataset)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses=error_codes("not_found", "in_use", "blob_store_unavailable"),
)
def delete_dataset(
    dataset: OwnedDataset, tenant: TenantDep, store: StoreDep, blobs: BlobsDep
) -> None:
    """Delete a dataset and, unless another record shares it, its file."""
    delete_upload(store, blobs, tenant, "dataset", dataset.id, dataset.sha256)
