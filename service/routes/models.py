"""Model uploads: a bounded structural check in a validation process, graph inspection in a
worker."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from jobs.archive_check import InvalidArchive
from jobs.queue import Queue
from jobs.validation import validate_upload
from service.deps import (
    BlobsDep,
    OwnedModel,
    QueueDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    UploadSlotsDep,
)
from service.errors import InvalidModel, broker_unavailable, error_responses
from service.limits import check_pending_inspections
from service.multipart import multipart_openapi
from service.schemas import ModelPublic
from service.upload_cleanup import delete_upload, forget_blob, release_upload
from service.uploads import Upload, UploadTarget, receive_upload

router = APIRouter(prefix="/v1/models", tags=["models"])

_SAVE_HINT = (
    "save the model with torch.export.save(torch.export.export(model, example_inputs), "
    "'model.pt2') and upload that file"
)


async def register_model(upload: Upload, target: UploadTarget, queue: Queue) -> ModelPublic:
    """Check the archive's structure, record the model and queue its inspection.

    Every path but success releases the upload's hold, so nothing is left behind.
    """
    store, blobs = target.store, target.blobs
    try:
        await validate_upload(
            "model_archive",
            blobs.path(upload.sha256),
            upload.filename,
            None,
            target.settings,
            tenant=target.tenant,
        )
        record = await run_in_threadpool(
            store.models.add,
            target.tenant,
            upload.sha256,
            upload.size,
            upload.filename,
            upload.hold_id,
        )
    except InvalidArchive as exc:
        await run_in_threadpool(release_upload, store, blobs, upload)
        raise InvalidModel(f"{exc}; {_SAVE_HINT}") from exc
    except BaseException:
        await run_in_threadpool(release_upload, store, blobs, upload)
        raise
    try:
        await run_in_threadpool(queue.enqueue_inspection, record.id)
    except Exception as exc:
        # A model nobody will ever inspect would stay `pending` forever: store nothing,
        # unless a worker already took it up (on another model's message).
        if await run_in_threadpool(_withdraw_model, target, record.id, upload.sha256):
            raise broker_unavailable(exc) from exc
    return ModelPublic.from_record(record)


def _withdraw_model(target: UploadTarget, model_id: str, sha256: str) -> bool:
    if not target.store.models.withdraw(target.tenant, model_id):
        return False
    forget_blob(target.store, target.blobs, sha256)
    return True


@router.post(
    "",
    status_code=201,
    response_model=ModelPublic,
    responses=error_responses(400, 408, 413, 415, 422, 429, 503, 507),
    openapi_extra=multipart_openapi(),
)
async def upload_model(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    queue: QueueDep,
    settings: SettingsDep,
    slots: UploadSlotsDep,
) -> ModelPublic:
    """Upload a torch.export program (.pt2, multipart field `file`); a worker inspects it."""
    target = UploadTarget(tenant, store, blobs, settings)
    with slots.take(tenant):
        await run_in_threadpool(check_pending_inspections, store, settings, tenant)
        upload = await receive_upload(request, target)
        return await register_model(upload, target, queue)


@router.get("/{model_id}", response_model=ModelPublic, responses=error_responses(404))
def get_model(model: OwnedModel) -> ModelPublic:
    """The model record; once inspected, its inputs, prunable layers and frozen groups."""
    return ModelPublic.from_record(model)


@router.delete("/{model_id}", status_code=204, responses=error_responses(404, 409))
def delete_model(model: OwnedModel, tenant: TenantDep, store: StoreDep, blobs: BlobsDep) -> None:
    """Delete a model and, unless another record shares it, its file."""
    delete_upload(store, blobs, tenant, "model", model.id, model.sha256)
