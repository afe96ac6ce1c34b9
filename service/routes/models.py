"""Model uploads: a bounded structural check in a validation process, graph inspection in a
worker."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from jobs.archive_check import InvalidArchive
from jobs.idempotency import Claim, Remembered
from jobs.queue import Queue
from jobs.states import ModelStatus
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
from service.errors import InvalidModel, broker_unavailable
from service.idempotency import IdempotencyKeyHeader, gone, replayable
from service.limits import check_pending_inspections
from service.listing import ModelStatusFilter, PageDep, parse_choices
from service.multipart import multipart_openapi
from service.openapi_errors import UPLOAD_ERRORS, error_codes
from service.schemas import ModelPublic, ModelsPublic
from service.upload_cleanup import delete_upload, forget_blob, release_upload
from service.upload_keys import begin_upload, completing, keyed, replayed_upload
from service.uploads import Upload, UploadTarget, discard_local_copy, receive_upload

router = APIRouter(prefix="/v1/models", tags=["models"])

_SAVE_HINT = (
    "save the model with torch.export.save(torch.export.export(model, example_inputs), "
    "'model.pt2') and upload that file"
)


async def register_model(
    upload: Upload, target: UploadTarget, queue: Queue, claim: Claim | None = None
) -> ModelPublic:
    """Check the archive's structure, record the model (completing `claim`, its idempotency
    key) and queue its inspection.

    Every path but success releases the upload's hold, so nothing is left behind.
    """
    store, blobs = target.store, target.blobs
    try:
        try:
            await validate_upload(
                "model_archive",
                upload.local,
                upload.filename,
                None,
                target.settings,
                tenant=target.tenant,
            )
        finally:
            await discard_local_copy(target, upload)
        record = await run_in_threadpool(
            store.models.add,
            target.tenant,
            upload.sha256,
            upload.size,
            upload.filename,
            upload.hold_id,
            claim,
        )
    except InvalidArchive as exc:
        await run_in_threadpool(release_upload, store, blobs, upload)
        raise InvalidModel(f"{upload.filename}: {exc}; {_SAVE_HINT}") from exc
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
    responses=error_codes(
        *UPLOAD_ERRORS,
        *("invalid_model", "broker_unavailable"),
        *("invalid_idempotency_key", "idempotency_key_reused", "idempotency_key_in_use"),
    )
    | replayable(201),
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
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> ModelPublic:
    """Upload a torch.export program (.pt2, multipart field `file`); a worker inspects it."""
    target = UploadTarget(tenant, store, blobs, settings)
    with slots.take(tenant):
        claim = await begin_upload(target, idempotency_key, "model")
        if isinstance(claim, Remembered):
            model_id = await replayed_upload(
                request, target, response, idempotency_key or "", claim, "model"
            )
            return await _replayed_model(target, model_id)
        async with keyed(target, claim, idempotency_key):
            await run_in_threadpool(check_pending_inspections, store, settings, tenant)
            upload = await receive_upload(request, target)
            return await register_model(upload, target, queue, completing(claim, request, upload))


async def _replayed_model(target: UploadTarget, model_id: str) -> ModelPublic:
    record = await run_in_threadpool(target.store.models.get, target.tenant, model_id)
    if record is None:
        raise gone("model", model_id)
    return ModelPublic.from_record(record)


@router.get("", response_model=ModelsPublic, responses=error_codes("invalid_filter"))
def list_models(
    tenant: TenantDep,
    store: StoreDep,
    page: PageDep,
    status: ModelStatusFilter = None,
) -> ModelsPublic:
    """The caller's models, newest first, one page at a time; `count` counts those that match."""
    statuses = parse_choices("status", status, ModelStatus)
    models, total = store.models.list(tenant, page.limit, page.offset, statuses)
    return ModelsPublic(data=[ModelPublic.from_record(m) for m in models], count=total)


@router.get("/{model_id}", response_model=ModelPublic, responses=error_codes("not_found"))
def get_model(model: OwnedModel) -> ModelPublic:
    """The model record; once inspected, its inputs, prunable layers and frozen groups."""
    return ModelPublic.from_record(model)


@router.delete(
    "/{model_id}",
    status_code=204,
    responses=error_codes("not_found", "in_use", "blob_store_unavailable"),
)
def delete_model(model: OwnedModel, tenant: TenantDep, store: StoreDep, blobs: BlobsDep) -> None:
    """Delete a model and, unless another record shares it, its file."""
    delete_upload(store, blobs, tenant, "model", model.id, model.sha256)
