"""Streaming multipart uploads: the file part goes straight to the blob store, never whole in RAM.

FastAPI's `UploadFile` would spool a second copy of a multi-GB model to a temporary file; here
the request body is parsed as it arrives and the file part is written (and hashed) by a
`BlobWriter`, so one copy ever exists and the size limit stops the transfer early.

A received upload holds its blob (`JobStore.hold_upload`) from before the file is moved into
place until its record replaces the hold or `release_upload` drops it: another tenant's
refusal or deletion of the same bytes can then never remove the file under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from jobs.blobs import BlobStore, BlobWriter
from jobs.disk_space import DiskFull
from jobs.settings import Settings
from jobs.store import JobStore
from service.errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.limits import check_free_disk, check_quota, check_storage, freeing_space

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
MAX_FIELD_BYTES = 4096
# Room for the multipart boundaries, part headers and small text fields on top of the file.
FORM_OVERHEAD_BYTES = 64 * 1024
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]")
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


def multipart_openapi(text_fields: dict[str, str] | None = None) -> dict[str, Any]:
    """The request body for /docs: routes read the stream themselves, so FastAPI cannot infer it."""
    properties: dict[str, Any] = {FILE_FIELD: {"type": "string", "format": "binary"}}
    for name, description in (text_fields or {}).items():
        properties[name] = {"type": "string", "description": description}
    schema = {"type": "object", "required": [FILE_FIELD], "properties": properties}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


def clean_filename(raw: str) -> str:
    """The client's file name, for display only: no directories, no control characters."""
    name = _UNSAFE_FILENAME.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255] or "upload"


@dataclass
class _Form:
    """Receives the parser's callbacks; file bytes wait in `pending` until the route writes them."""

    text_fields: frozenset[str]
    max_file_bytes: int
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_bytes: int = 0
    pending: list[bytes] = field(default_factory=list)
    ended: bool = False
    _header_name: bytes = b""
    _header_value: bytes = b""
    _disposition: bytes = b""
    _name: str = ""
    _is_file: bool = False
    _text: bytearray = field(default_factory=bytearray)
    _seen: set[str] = field(default_factory=set)

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_val,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._text = b"", bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        allowed = sorted({FILE_FIELD} | self.text_fields)
        if name not in allowed:
            raise BadRequest(
                f"unexpected form field {name!r}; this endpoint takes: {', '.join(allowed)}"
            )
        if name != FILE_FIELD and name in self._seen:
            # Each field once: millions of tiny repeated parts would cost the API's event
            # loop minutes of parsing for one request.
            raise BadRequest(f"form field {name!r} is given more than once; send it once")
        self._seen.add(name)
        self._is_file = name == FILE_FIELD
        if self._is_file:
            if self.filename is not None:
                raise BadRequest(f"send one file in the form field {FILE_FIELD!r}, not several")
            self.filename = clean_filename(options.get(b"filename", b"").decode("utf-8", "replace"))
        self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                raise PayloadTooLarge(too_large_message(self.max_file_bytes))
            self.pending.append(data[start:end])
        else:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise BadRequest(
                    f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes"
                )

    def _part_end(self) -> None:
        if not self._is_file:
            try:
                self.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest(f"form field {self._name!r} is not UTF-8 text") from exc

    def _end(self) -> None:
        self.ended = True


def too_large_message(limit: int) -> str:
    return (
        f"the file is larger than this server accepts ({limit} bytes; "
        "the operator sets DEADWEIGHT_MAX_UPLOAD_BYTES)"
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
    await run_in_threadpool(
        check_storage, target.store, blobs, settings, target.tenant, declared or 0
    )
    form = _Form(text_fields=text_fields, max_file_bytes=settings.max_upload_bytes)
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
            target.store.hold_upload, target.tenant, writer.sha256, writer.size
        )
        try:
            sha256, size = await run_in_threadpool(_commit, writer)
        except BaseException:
            await run_in_threadpool(target.store.release_hold, hold_id, blobs.delete)
            raise
    return Upload(sha256, size, form.filename, form.fields, hold_id)


def _commit(writer: BlobWriter) -> tuple[str, int]:
    try:
        return writer.commit()
    except DiskFull as exc:
        raise _disk_full() from exc


def _disk_full() -> InsufficientStorage:
    return InsufficientStorage(
        "the server's disk filled up during the upload, which was discarded; delete jobs or "
        "uploads you no longer need, or ask the operator for more space",
        code="storage_full",
    )


async def _pump(
    request: Request, parser: MultipartParser, form: _Form, writer: BlobWriter, target: UploadTarget
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


def release_upload(store: JobStore, blobs: BlobStore, upload: Upload) -> None:
    """Drop a refused or failed upload's hold; its blob goes unless something refers to it."""
    store.release_hold(upload.hold_id, blobs.delete)


def forget_blob(store: JobStore, blobs: BlobStore, sha256: str) -> None:
    """After deleting a record: remove its blob unless another record or upload needs it."""
    store.release_blob(sha256, blobs.delete)


def delete_upload(
    store: JobStore, blobs: BlobStore, tenant: str, kind: str, upload_id: str, sha256: str
) -> None:
    """Delete a model or dataset and, unless another record or upload needs it, its file.

    Raises:
        Conflict: a queued or running job uses it (checked and deleted in one step, so a job
            submitted at the same moment cannot slip in between).
    """

    def delete() -> bool | None:
        deleted = store.delete_upload_unless_used(tenant, upload_id)
        if deleted:
            forget_blob(store, blobs, sha256)
        return deleted

    if freeing_space(blobs, delete) is False:
        raise Conflict(
            f"{kind} {upload_id!r} is used by a queued or running job; cancel the job first",
            code="in_use",
        )
