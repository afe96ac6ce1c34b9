"""Files no record will ever claim: what dead processes left behind, swept by the reaper.

- temporary upload files no live writer holds locked, and inspection folders older than
  an inspection can run (`sweep_tmp`);
- holds of uploads whose API process died while validating them (their blob goes too,
  unless a record refers to it);
- blobs with no record and no hold (a process died between deleting a record and its blob).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.blob_writer import UPLOAD_PREFIX, remove_if_abandoned
from jobs.blobs import BlobStore, is_blob_name
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
    temporary = sweep_tmp(blobs, age)
    holds = store.blob_refs.stale_holds(age)
    for hold_id in holds:
        store.blob_refs.release_hold(hold_id, blobs.delete)
    orphans = 0
    for sha256 in store.blob_refs.unreferenced(_blobs_older_than(blobs, age)):
        # Checked and unlinked under the blob's lock: an upload arriving now keeps it.
        if store.blob_refs.release_blob(sha256, blobs.delete):
            orphans += 1
    return Swept(temporary=temporary, holds=len(holds), blobs=orphans)


def sweep_tmp(blobs: BlobStore, max_age_seconds: float) -> int:
    """Remove leftovers of dead uploads and inspections from tmp/; returns how many.

    An upload file goes as soon as no writer holds its lock (its process died, whatever
    its host); anything else (an inspection's folder) once untouched for `max_age_seconds`.
    """
    if not blobs.tmp_dir.is_dir():
        return 0
    removed = 0
    now = time.time()
    for entry in os.scandir(blobs.tmp_dir):
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if entry.name.startswith(UPLOAD_PREFIX) and entry.is_file(follow_symlinks=False):
            removed += remove_if_abandoned(Path(entry.path))
        elif age > max_age_seconds:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def _blobs_older_than(blobs: BlobStore, min_age_seconds: float) -> list[str]:
    """Blob names older than that: the store then says which ones nothing refers to."""
    if not blobs.blobs_dir.is_dir():
        return []
    cutoff = time.time() - min_age_seconds
    found = []
    for shard in os.scandir(blobs.blobs_dir):
        if not shard.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(shard.path):
            if is_blob_name(entry.name) and entry.stat().st_mtime < cutoff:
                found.append(entry.name)
    return found
