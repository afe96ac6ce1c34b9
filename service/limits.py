"""Per-tenant limits and storage checks, applied before the API takes on work.

Each limit protects the other tenants: a tenant over its limit gets 429 with `Retry-After`
(work in flight) or 507 (storage), with a message naming the setting, and nothing is stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from jobs.blobs import BlobStore
from jobs.disk_space import ensure_reserve, free_bytes, release_reserve
from jobs.settings import Settings
from jobs.store import JobStore
from jobs.usage import tenant_stored_bytes
from service.errors import QuotaExceeded, StorageFull, TooManyRequests
from service.store_errors import is_storage_full

T = TypeVar("T")

log = logging.getLogger(__name__)

# Seconds a client is told to wait: work in flight ends in seconds (uploads, inspections)
# to minutes (jobs); polling sooner only adds load.
UPLOAD_RETRY_AFTER_S = 5
JOB_RETRY_AFTER_S = 30


class UploadSlots:
    """Uploads each tenant is sending to this API process right now.

    Counted per process, on the event loop (no lock needed): it bounds the sockets, temporary
    files and validation children one tenant can tie up here.
    """

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._busy: Counter[str] = Counter()

    @contextmanager
    def take(self, tenant: str) -> Iterator[None]:
        if self._busy[tenant] >= self.per_tenant:
            raise TooManyRequests(
                f"this tenant already has {self.per_tenant} uploads in progress; wait for one "
                "to finish (the operator sets DEADWEIGHT_TENANT_UPLOADS_IN_FLIGHT)",
                headers={"Retry-After": str(UPLOAD_RETRY_AFTER_S)},
            )
        self._busy[tenant] += 1
        try:
            yield
        finally:
            self._busy[tenant] -= 1
            if not self._busy[tenant]:
                del self._busy[tenant]


def check_pending_inspections(store: JobStore, settings: Settings, tenant: str) -> None:
    """429 when the tenant already has as many models waiting for inspection as allowed."""
    if store.usage.pending_inspections(tenant) >= settings.tenant_pending_inspections:
        raise TooManyRequests(
            f"this tenant already has {settings.tenant_pending_inspections} models waiting "
            "for their inspection; upload more once they are ready (the operator sets "
            "DEADWEIGHT_TENANT_PENDING_INSPECTIONS)",
            headers={"Retry-After": str(UPLOAD_RETRY_AFTER_S)},
        )


def check_jobs_in_flight(store: JobStore, settings: Settings, tenant: str) -> None:
    """429 when the tenant already has as many queued or running jobs as allowed."""
    if store.usage.jobs_in_flight(tenant) >= settings.tenant_jobs_in_flight:
        raise TooManyRequests(
            f"this tenant already has {settings.tenant_jobs_in_flight} jobs queued or "
            "running; submit more when some have ended, or cancel some (the operator sets "
            "DEADWEIGHT_TENANT_JOBS_IN_FLIGHT)",
            headers={"Retry-After": str(JOB_RETRY_AFTER_S)},
        )


def check_storage(
    store: JobStore, blobs: BlobStore, settings: Settings, tenant: str, incoming: int
) -> None:
    """507 when `incoming` more bytes would pass the tenant's quota or fill the disk."""
    check_free_disk(blobs, settings, incoming)
    ensure_reserve(blobs.root)  # after a full disk was cleared, the ballast comes back
    check_quota(store, blobs, settings, tenant, incoming)


def check_quota(
    store: JobStore, blobs: BlobStore, settings: Settings, tenant: str, incoming: int
) -> None:
    """507 when `incoming` more bytes would pass the tenant's quota."""
    quota = settings.tenant_storage_bytes
    if not quota:
        return
    used = tenant_stored_bytes(store.usage, blobs, tenant)
    if used + incoming > quota:
        raise QuotaExceeded(
            f"this tenant stores {used} bytes of its quota of {quota}"
            + (f" and this request adds {incoming}" if incoming else "")
            + ": delete jobs, models or datasets it no longer needs (the operator sets "
            "DEADWEIGHT_TENANT_STORAGE_BYTES)"
        )


def check_free_disk(blobs: BlobStore, settings: Settings, incoming: int) -> None:
    """507 when writing `incoming` bytes would leave less than the configured free space."""
    free = free_bytes(blobs.root)
    # `<=`: a disk with nothing left fails even when no reserve is configured.
    if free - incoming <= settings.min_free_disk_bytes:
        raise StorageFull(
            "the server's data directory is nearly full "
            f"({free} bytes free, {settings.min_free_disk_bytes} kept in reserve); "
            "delete jobs or uploads you no longer need, or ask the operator for more space"
        )


def freeing_space(blobs: BlobStore, deletion: Callable[[], T]) -> T:
    """Run a deletion; if the disk is too full even for that, give back the reserve and retry.

    SQLite must write its journal before it can delete a row, so on a full disk deleting
    fails exactly when the user needs it most; the ballast file (`jobs.disk_space`) is what
    makes room. It is written again once the disk has space.
    """
    try:
        result = deletion()
    except Exception as exc:
        if not is_storage_full(exc) or not release_reserve(blobs.root):
            raise
        log.warning("the data directory is full: released the reserve to delete")
        result = deletion()
    ensure_reserve(blobs.root)
    return result
