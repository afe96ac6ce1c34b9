"""Files no record will ever claim: what dead processes left behind, swept by the reaper.

- temporary upload files and inspection folders (`BlobStore.sweep_tmp`);
- holds of uploads whose API process died while validating them (their blob goes too,
  unless a record refers to it);
- blobs with no record and no hold (a process died between deleting a record and its blob).
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.blobs import BlobStore
from jobs.settings import Settings
from jobs.store import JobStore


@dataclass(frozen=True)
class Swept:
    temporary: int
    holds: int
    blobs: int


def sweep_leftovers(store: JobStore, blobs: BlobStore, settings: Settings) -> Swept:
    """Remove leftovers older than anything a live process could still be working on."""
    age = settings.leftover_seconds()
    temporary = blobs.sweep_tmp(age)
    holds = store.stale_holds(age)
    for hold_id in holds:
        store.release_hold(hold_id, blobs.delete)
    orphans = 0
    for sha256 in store.unreferenced(blobs.unreferenced_candidates(age)):
        # Checked and unlinked under the blob's lock: an upload arriving now keeps it.
        if store.release_blob(sha256, blobs.delete):
            orphans += 1
    return Swept(temporary=temporary, holds=len(holds), blobs=orphans)
