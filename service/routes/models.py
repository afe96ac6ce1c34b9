"""Model uploads: a structural check here, graph inspection in a worker."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from jobs.blobs import BlobStore
from jobs.queue import Queue
from jobs.store import JobStore
from service.deps import BlobsDep, OwnedModel, QueueDep, SettingsDep, StoreDep, TenantDep
from service.errors import Conflict, Unprocessable, broker_unavailable, error_responses
from service.schemas import ModelPublic
from service.uploads import Upload, discard_blob, multipart_openapi, receive_upload

router = APIRouter(prefix="/v1/models", tags=["models"])

ZIP_MAGIC = b"PK\x03\x04"
# torch.export.save writes `<archive>/models/<name>.json` (the graph) and
# `<archive>/archive_format`.
_GRAPH_ENTRY = re.compile(r"([^/]+)/models/[^/]+\.json")
_SAVE_HINT = (
    "save the model with torch.export.save(torch.export.export(model, example_inputs), "
    "'model.pt2') and upload that file"
)


def _invalid(reason: str) -> Unprocessable:
    return Unprocessable(f"{reason}; {_SAVE_HINT}", code="invalid_model")


def check_export_archive(path: Path) -> None:
    """Cheap structural check of a .pt2 (zip central directory only; the graph is not parsed).

    The API process never interprets model contents: the worker's safe reader does that.
    """
    with path.open("rb") as f:
        if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise _invalid("the file is not a torch.export archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise _invalid(f"the zip archive is damaged ({exc})") from exc
    graphs = [m for name in names if (m := _GRAPH_ENTRY.fullmatch(name))]
    if len(graphs) != 1:
        raise _invalid(f"expected exactly one <archive>/models/<name>.json, found {len(graphs)}")
    if f"{graphs[0].group(1)}/archive_format" not in names:
        raise _invalid("the archive has no archive_format entry")


def register_model(
    upload: Upload, tenant: str, store: JobStore, blobs: BlobStore, queue: Queue
) -> ModelPublic:
    try:
        check_export_archive(blobs.path(upload.sha256))
    except Unprocessable:
        discard_blob(store, blobs, upload.sha256)
        raise
    record = store.add_model(tenant, upload.sha256, upload.size, upload.filename)
    try:
        queue.enqueue_inspection(record.id)
    except Exception as exc:
        # A model nobody will ever inspect would stay `pending` forever: store nothing.
        store.delete_model(tenant, record.id)
        discard_blob(store, blobs, upload.sha256)
        raise broker_unavailable(exc) from exc
    return ModelPublic.from_record(record)


@router.post(
    "",
    status_code=201,
    response_model=ModelPublic,
    responses=error_responses(400, 413, 415, 422, 503),
    openapi_extra=multipart_openapi(),
)
async def upload_model(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    blobs: BlobsDep,
    queue: QueueDep,
    settings: SettingsDep,
) -> ModelPublic:
    """Upload a torch.export program (.pt2, multipart field `file`); a worker inspects it."""
    upload = await receive_upload(request, blobs, settings.max_upload_bytes)
    return await run_in_threadpool(register_model, upload, tenant, store, blobs, queue)


@router.get("/{model_id}", response_model=ModelPublic, responses=error_responses(404))
def get_model(model: OwnedModel) -> ModelPublic:
    """The model record; once inspected, its inputs, prunable layers and frozen groups."""
    return ModelPublic.from_record(model)


@router.delete("/{model_id}", status_code=204, responses=error_responses(404, 409))
def delete_model(model: OwnedModel, tenant: TenantDep, store: StoreDep, blobs: BlobsDep) -> None:
    """Delete a model and, unless another record shares it, its file."""
    if store.uploads_in_use_by_jobs(tenant, model.id):
        raise Conflict(
            f"model {model.id!r} is used by a queued or running job; cancel the job first",
            code="in_use",
        )
    store.delete_model(tenant, model.id)
    discard_blob(store, blobs, model.sha256)
