"""A thin typed layer over a boto3 S3 client: the calls the S3 blob store makes, and nothing
of boto3's shapes outside this file.

The client is built from the settings: `DEADWEIGHT_S3_ENDPOINT_URL` for a store that is not
AWS (path-style addressing then, which MinIO, Ceph and moto need), region and credentials
from the standard AWS variables (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, ..., or a role), which
boto3 reads itself. boto3 is imported only when a process uses S3, so the default (the data
directory) does not pay for its import.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as StoreConnectionError

from jobs.blob_url import S3Location

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

# What the store's calls raise (the API answers an outage among them with 503, `is_outage`).
STORE_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
# Files above this go up and down in parts, several at once (boto3's managed transfer).
PART_BYTES = 16 * 1024 * 1024
# A download streamed through the API is read in chunks of this size.
STREAM_CHUNK = 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}
# A conditional write lost: the object exists (412), or another write of it is in flight (409).
_EXISTS = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}
_DELETE_BATCH = 1000  # DeleteObjects' limit per request
# Answers that say the store is busy or failing now, not that the request is wrong.
_BUSY = {"SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable", "InternalError"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


@dataclass
class ObjectBody:
    """An object's bytes being read: the whole object, or the range asked for."""

    chunks: Iterator[bytes]
    size: int  # bytes this body carries
    total: int  # bytes of the whole object
    content_range: str | None  # `bytes a-b/total` when a range was asked for
    close: Any  # () -> None; frees the connection (a client that went away)


class ObjectStore:
    """One bucket and prefix; thread-safe (one boto3 client, shared by the API's threads)."""

    def __init__(self, location: S3Location, endpoint_url: str | None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.location = location
        config = Config(
            # Throttling, 5xx and dropped connections are retried with backoff, 3 attempts in
            # all unless AWS_MAX_ATTEMPTS says otherwise; a store that stays down fails the
            # call after these, and the caller (a request, a job) fails with it.
            retries={"mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            signature_version="s3v4",
            s3={"addressing_style": "path"} if endpoint_url else {},
            # S3-compatible stores differ in the newer default checksums; send them only
            # where the API requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=32,
        )
        # A session of its own: boto3's default session is not thread-safe to create clients.
        session = boto3.session.Session()
        self._client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=4
        )

    def key(self, *parts: str) -> str:
        return self.location.key(*parts)

    def ping(self) -> None:
        """Raises unless the bucket answers (and these credentials may use it)."""
        self._client.head_bucket(Bucket=self.location.bucket)

    def size(self, key: str) -> int | None:
        """The object's size; None when there is none."""
        try:
            head = self._client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return int(head["ContentLength"])

    def upload_file(self, path: Path, key: str) -> None:
        """Upload a file; in parts when large (an object appears whole or not at all)."""
        from boto3.exceptions import S3UploadFailedError

        try:
            self._client.upload_file(str(path), self.location.bucket, key, Config=self._transfer)
        except S3UploadFailedError as exc:
            # boto3 wraps the store's answer; callers judge the answer itself (`is_outage`).
            if isinstance(exc.__context__, ClientError):
                raise exc.__context__ from None
            raise

    def put_bytes(self, key: str, data: bytes, only_if_absent: bool = False) -> bool:
        """Write a small object; with `only_if_absent`, False (nothing written) when the key
        exists already: the first writer wins (S3's conditional write, `If-None-Match`)."""
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if only_if_absent else {}
        try:
            self._client.put_object(Bucket=self.location.bucket, Key=key, Body=data, **extra)
        except ClientError as exc:
            if only_if_absent and _code(exc) in _EXISTS:
                return False
            raise
        return True

    def get_bytes(self, key: str, max_bytes: int) -> bytes | None:
        """A small object's bytes; None when there is none or it is larger than `max_bytes`."""
        body = self.open(key)
        if body is None:
            return None
        try:
            if body.total > max_bytes:
                return None
            return b"".join(body.chunks)
        finally:
            body.close()

    def download_file(self, key: str, path: Path) -> bool:
        """Download an object into `path` (in parts when large); False when there is none."""
        from boto3.exceptions import RetriesExceededError

        try:
            self._client.download_file(self.location.bucket, key, str(path), Config=self._transfer)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        except RetriesExceededError as exc:
            # boto3 wraps the error of a stream that kept failing (a read timeout, a dropped
            # connection); callers judge that error itself (`STORE_ERRORS`, `is_outage`),
            # and a bare socket error is the dropped connection it stands for.
            last = getattr(exc, "last_exception", None)  # untyped in the stubs
            if isinstance(last, STORE_ERRORS):
                raise last from None
            raise HTTPClientError(error=last) from last
        return True

    def open(
        self, key: str, first: int | None = None, last: int | None = None
    ) -> ObjectBody | None:
        """The object's bytes as a stream (bytes `first` to `last`, inclusive, when given);
        None when there is none."""
        extra: dict[str, Any] = {"Range": f"bytes={first}-{last}"} if first is not None else {}
        try:
            got = self._client.get_object(Bucket=self.location.bucket, Key=key, **extra)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        body = got["Body"]
        size = int(got["ContentLength"])
        content_range = got.get("ContentRange")
        total = int(content_range.rsplit("/", 1)[1]) if content_range else size
        return ObjectBody(
            chunks=body.iter_chunks(STREAM_CHUNK),
            size=size,
            total=total,
            content_range=content_range,
            close=body.close,
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, a page (1000 keys) at a time."""
        pages = self._client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], int(item["Size"]), item["LastModified"])

    def delete(self, key: str) -> None:
        """Remove an object; one that is gone already is not an error (S3 answers 204)."""
        self._client.delete_object(Bucket=self.location.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; returns how many."""
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + _DELETE_BATCH]
            ]
            done = self._client.delete_objects(
                Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            errors = done.get("Errors") or []
            if errors:
                first = errors[0]
                raise OSError(
                    f"S3 refused to delete {len(errors)} objects under {prefix!r}, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)

    def presigned_get(self, key: str, seconds: int, filename: str, media_type: str) -> str:
        """A URL that GETs the object without credentials for `seconds`, answered with this
        file name and media type."""
        return self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.location.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": media_type,
            },
            ExpiresIn=seconds,
        )


def is_outage(exc: BaseException) -> bool:
    """The store cannot be reached, or answers that it is busy or failing (throttling, 5xx):
    the same request may succeed later. Anything else (a refusal, missing credentials) is
    the operator's to fix."""
    if isinstance(exc, StoreConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or _code(exc) in _BUSY
    return False


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
