"""Receiving an upload: the request body streamed into the blob store, never whole in RAM.

FastAPI's `UploadFile` would spool a second copy of a multi-GB model to a temporary file; here
the request body is parsed as it arrives (`service.multipart.MultipartForm`) and the file part
is written (and hashed) by a `BlobWriter`, so one copy ever exists and the size limit stops
the transfer early. Storage is checked before the first byte (by Content-Length), every 16 MiB
while it arrives (free disk), and once it is complete (the tenant's quota).

A received upload holds its blob (`JobStore.blob_refs.hold_upload`) from before the file is
moved into place until its record replaces the hold or `release_upload` drops it
(`service.upload_cleanup`): another tenant's refusal or deletion of the same bytes can then
never remove the file under it.

With an S3 store the committed file goes up to the bucket (in parts when large) and stays
on this disk only as the upload's local copy (`Upload.local`), which the API's checks read;
the route discards it once they are done (`discard_local_copy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from jobs.blob_writer import BlobWriter
from jobs.blobs import BlobStore
from jobs.disk_space import DiskFull
from jobs.leftovers import sweep_spool
from jobs.settings import Settings
from jobs.store import JobStore
from service.errors import BadRequest, PayloadTooLarge, StorageFull, UnsupportedMediaType
from service.limits import check_free_disk, check_quota, check_storage
from service.metrics import count_upload
from service.multipart import FILE_FIELD, MultipartForm, too_large_message

# Room for the multipart boundaries, part headers and small text fields on top of the file.
FORM_OVERHEAD_BYTES = 64 * 1024
# How often (in bytes received) the free space of the data directory is checked again.
_DISK_CHECK_EVERY = 16 * 1024 * 1024


@dataclass(frozen=True)
class Upload:
    """A committed file part (content-addressed blob) and the form's text fields."""

    sha256: str
    size: int
    filename: str
    fields: dict[str, str]
    hold_id: str  # keeps the blob until a record replaces it or release_upload drops it
    # Where this process reads the bytes: the blob itself, or (S3) a spool copy that
    # `discard_local_copy` removes once the route's checks are done.
    local: Path


@dataclass(frozen=True)
class UploadTarget:
    """Where an upload goes and whose it is: the stores, the settings and the tenant."""

    tenant: str
    store: JobStore
    blobs: BlobStore
    settings: Settings


async def receive_upload(
    request: Request, target: UploadTarget, text_fields: frozenset[str] = frozenset()
) -> Upload:
    """Stream a multipart form into the blob store; the file part is required.

    The upload is held (see the module docstring): the caller replaces the hold with a
    record, or calls `release_upload` on every other path.

    Raises:
        PayloadTooLarge: by Content-Length at once, or as soon as the streamed file passes
            the size limit (the partial file is discarded).
        InsufficientStorage: the tenant's quota or the disk's free space would be passed.
        BadRequest / UnsupportedMediaType: malformed form, missing `file`, unknown fields.
    """
    settings, blobs = target.settings, target.blobs
    declared = _declared_length(request, settings.max_upload_bytes)
    # Spool copies a dead request left (a process killed mid-check): nothing else on this
    # disk sweeps them while the API runs, and the workers' reapers never see it.
    await run_in_threadpool(sweep_spool, blobs, settings.leftover_seconds())
    await run_in_threadpool(
        check_storage, target.store, blobs, settings, target.tenant, declared or 0
    )
    form = MultipartForm(text_fields=text_fields, max_file_bytes=settings.max_upload_bytes)
    try:
        parser = MultipartParser(_boundary(request), form.callbacks())
    except FormParserError as exc:
        raise BadRequest(f"bad multipart boundary: {exc}") from exc
    writer: BlobWriter = await run_in_threadpool(blobs.begin_upload)
    # The writer aborts (deletes its temporary file) on any exception, 413 included.
    with writer:
        await _pump(request, parser, form, writer, target)
        if not form.ended:
            raise BadRequest("the multipart body ended before its closing boundary")
        if form.filename is None:
            raise BadRequest(f"the form field {FILE_FIELD!r} (the file to upload) is required")
        # Again on what arrived: a chunked body declared nothing, and the tenant's other
        # uploads may have been held meanwhile (this narrows, not closes, the race).
        await run_in_threadpool(
            check_quota, target.store, blobs, settings, target.tenant, writer.size
        )
        hold_id = await run_in_threadpool(
            target.store.blob_refs.hold_upload, target.tenant, writer.sha256, writer.size
        )
        try:
            sha256, size = await run_in_threadpool(_commit, writer)
        except BaseException:
            await run_in_threadpool(target.store.blob_refs.release_hold, hold_id, blobs.delete)
            raise
    count_upload(request, size)
    return Upload(sha256, size, form.filename, form.fields, hold_id, writer.local_path)


async def discard_local_copy(target: UploadTarget, upload: Upload) -> None:
    """The route is done reading the upload: a spool copy goes (the blob itself stays).
    Shielded: a client that went away cancels the request, and the copy must go all the
    same (with S3, nothing else on this disk removes it before `sweep_spool`'s age)."""
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(target.blobs.discard_local_copy, upload.local)


async def _pump(
    request: Request,
    parser: MultipartParser,
    form: MultipartForm,
    writer: BlobWriter,
    target: UploadTarget,
) -> None:
    max_body = target.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    received = 0
    checked_at = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise PayloadTooLarge(too_large_message(form.max_file_bytes))
            parser.write(chunk)
            if form.pending:
                # Disk writes and hashing block; keep them off the event loop.
                data, form.pending = b"".join(form.pending), []
                await run_in_threadpool(writer.write, data)
            if writer.size - checked_at >= _DISK_CHECK_EVERY:
                # Other uploads and jobs fill the same disk: stop before it is full.
                checked_at = writer.size
                check_free_disk(target.blobs, target.settings, 0)
        parser.finalize()
    except FormParserError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from exc
    except ClientDisconnect as exc:
        raise BadRequest("the client disconnected during the upload") from exc
    except DiskFull as exc:
        raise _disk_full() from exc


def _commit(writer: BlobWriter) -> tuple[str, int]:
    try:
        return writer.commit()
    except DiskFull as exc:
        raise _disk_full() from exc


def _disk_full() -> StorageFull:
    return StorageFull(
        "the server's disk filled up during the upload, which was discarded; delete jobs or "
        "uploads you no longer need, or ask the operator for more space"
    )


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise UnsupportedMediaType(
            f"send the upload as multipart/form-data with the file in the field {FILE_FIELD!r}"
        )
    return params[b"boundary"]


def _declared_length(request: Request, max_bytes: int) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise BadRequest("the Content-Length header is not a number")
    if int(declared) > max_bytes + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(too_large_message(max_bytes))
    return int(declared)
