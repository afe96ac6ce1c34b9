"""A job's published files as HTTP responses, whichever the blob store.

- The data directory: `JobFileResponse` (Starlette's FileResponse: byte ranges, ETag,
  Last-Modified).
- S3, by default: the object streamed through the API, with its Content-Length and media
  type; one byte range is answered 206 (the store reads just that range); several ranges
  get the whole file (200), which HTTP allows.
- S3 with `DEADWEIGHT_S3_PRESIGNED_DOWNLOADS=true`, for artifact downloads: a 307 to a
  presigned GET URL valid `DEADWEIGHT_S3_PRESIGN_SECONDS`, so the bytes never pass through
  the API (the client must reach the store's endpoint). The JSON routes are always proxied.

A published HTML page (report.html) is the exception to "served as an attachment": it is
shown inline, so its relative links reach the job's other artifacts, under `PAGE_HEADERS`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from jobs.blobs import BlobStore
from jobs.object_store import ObjectBody
from jobs.s3_blobs import RemoteArtifact, S3BlobStore
from jobs.settings import Settings
from service.errors import NotFound
from service.file_responses import JobFileResponse, range_refusal

# A page served from the API's origin could act with a user's access to the API if anything
# in it ran as script. The report has no script and loads nothing (inline styles, inline
# SVG): the policy forbids any script, any fetch, any form and any framing, so a user's name
# that slipped through escaping still could not act; nosniff keeps other files from being
# read as HTML.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def is_page(media_type: str) -> bool:
    return media_type.split(";")[0].strip() == "text/html"


def published_file(
    request: Request,
    blobs: BlobStore,
    settings: Settings,
    job_id: str,
    name: str,
    download: bool,
) -> Response | None:
    """The response serving one published file; None when the job did not publish it.

    `download`: an artifact download (served as an attachment, and redirected to the bucket
    when presigned downloads are on); else a JSON route's body, served inline.
    """
    if not isinstance(blobs, S3BlobStore):
        # Only names in the job's listing resolve: `..`, separators and absolute paths miss.
        info = next((a for a in blobs.list_artifacts(job_id) if a.name == name), None)
        path = blobs.artifact_path(job_id, name)
        if info is None or path is None:
            return None
        page = is_page(info.media_type)
        filename = info.name if download and not page else None
        headers = PAGE_HEADERS if page else None
        return JobFileResponse(path, media_type=info.media_type, filename=filename, headers=headers)
    artifact = blobs.remote_artifact(job_id, name)
    if artifact is None:
        return None
    if download and settings.s3_presigned_downloads:
        url = blobs.presigned_url(artifact, settings.s3_presign_seconds)
        # The URL expires: no cache may keep the redirect longer than it is good for.
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    return _streamed(request, blobs, artifact, download)


def _streamed(
    request: Request, blobs: S3BlobStore, artifact: RemoteArtifact, download: bool
) -> Response:
    size = artifact.info.bytes
    http_range = request.headers.get("range")
    first = last = None
    if http_range is not None:
        refusal = range_refusal(http_range, size)
        if refusal is not None:
            return refusal
        ranges = FileResponse._parse_range_header(http_range, size)
        if len(ranges) == 1:
            first, last = ranges[0][0], ranges[0][1] - 1
    body = blobs.open_artifact(artifact, first, last)
    if body is None:  # removed since the manifest was read (the job was deleted)
        raise NotFound(f"job has no artifact {artifact.info.name!r}")
    headers = {"Content-Length": str(body.size), "Accept-Ranges": "bytes"}
    if body.content_range:
        headers["Content-Range"] = body.content_range
    if is_page(artifact.info.media_type):
        headers.update(PAGE_HEADERS)
    elif download:
        headers["Content-Disposition"] = _attachment(artifact.info.name)
    return StreamingResponse(
        _chunks(body),
        status_code=206 if body.content_range else 200,
        media_type=artifact.info.media_type,
        headers=headers,
    )


async def _chunks(body: ObjectBody) -> AsyncIterator[bytes]:
    """The object's bytes, read off the event loop; the connection to the store is closed
    however the transfer ends (a client that went away cancels it)."""
    try:
        while chunk := await run_in_threadpool(next, body.chunks, b""):
            yield chunk
    finally:
        body.close()


def _attachment(name: str) -> str:
    # As Starlette's FileResponse writes it, so both stores name a download alike.
    quoted = quote(name)
    if quoted != name:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{name}"'
