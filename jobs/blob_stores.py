"""Which blob store a process uses: the data directory (the default), or an S3 bucket when
`DEADWEIGHT_BLOB_URL` is set. Every process (API, workers, their reapers) opens its own from
the same settings."""

from __future__ import annotations

from jobs.blobs import BlobStore
from jobs.settings import Settings


def open_blob_store(settings: Settings) -> BlobStore:
    """The process's blob store; boto3 is imported only for an S3 one."""
    root = settings.resolved_data_dir()
    location = settings.s3_location()
    if location is None:
        return BlobStore(root)
    from jobs.object_store import ObjectStore
    from jobs.s3_blobs import S3BlobStore

    return S3BlobStore(root, ObjectStore(location, settings.s3_endpoint_url or None))
