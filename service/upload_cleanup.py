"""What happens to an upload's file once nobody needs it: holds released, blobs forgotten.

Blobs are shared by content: two tenants uploading the same bytes share one file. So a file is
never deleted directly; the job store drops a hold or a record and removes the blob only when
nothing else refers to it (`jobs.blob_refs`), in the same step.
"""

from __future__ import annotations

from jobs.blobs import BlobStore
from jobs.store import JobStore
from service.errors import Conflict
from service.limits import freeing_space
from service.uploads import Upload


def release_upload(store: JobStore, blobs: BlobStore, upload: Upload) -> None:
    """Drop a refused or failed upload's hold; its blob goes unless something refers to it."""
    store.blob_refs.release_hold(upload.hold_id, blobs.delete)


def forget_blob(store: JobStore, blobs: BlobStore, sha256: str) -> None:
    """After deleting a record: remove its blob unless another record or upload needs it."""
    store.blob_refs.release_blob(sha256, blobs.delete)


def delete_upload(
    store: JobStore, blobs: BlobStore, tenant: str, kind: str, upload_id: str, sha256: str
) -> None:
    """Delete a model or dataset and, unless another record or upload needs it, its file.

    Raises:
        Conflict: a queued or running job uses it (checked and deleted in one step, so a job
            submitted at the same moment cannot slip in between).
    """

    def delete() -> bool | None:
        deleted = store.deletion.delete_upload_unless_used(tenant, upload_id)
        if deleted:
            forget_blob(store, blobs, sha256)
        return deleted

    if freeing_space(blobs, delete) is False:
        raise Conflict(
            f"{kind} {upload_id!r} is used by a queued or running job; cancel the job first",
            code="in_use",
        )
