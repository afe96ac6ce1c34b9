"""Files no record will ever claim: what dead processes left behind, swept by the reaper.

- temporary upload files no live writer holds locked, and inspection folders older than
  an inspection can run (`sweep_tmp`);
- holds of uploads whose API process died while validating them (their blob goes too,
  unless a record refers to it);
- blobs with no record and no hold (a process died between deleting a record and its blob),
  in the data directory or, with an S3 store, in the bucket (`BlobStore.blobs_older_than`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.blob_writer import SPOOL_PREFIX, UPLOAD_PREFIX, remove_if_abandoned
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
    temporary = sweep_tmp(blobs, age)
    holds = store.blob_refs.stale_holds(age)
    for hold_id in holds:
        store.blob_refs.release_hold(hold_id, blobs.delete)
    orphans = 0
    for sha256 in store.blob_refs.unreferenced(blobs.blobs_older_than(age)):
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


def sweep_spool(blobs: BlobStore, max_age_seconds: float) -> int:
    """Remove uploads' local copies (`SPOOL_PREFIX`; an S3 store's API only) untouched for
    `max_age_seconds`: the checks that read one end sooner (`Settings.leftover_seconds`), so
    an older one's request died without discarding it. Returns how many."""
    removed = 0
    cutoff = time.time() - max_age_seconds
    try:
        entries = list(os.scandir(blobs.tmp_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(SPOOL_PREFIX):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                Path(entry.path).unlink()
                removed += 1
        except FileNotFoundError:
            continue  # discarded meanwhile by its own request
    return removed
