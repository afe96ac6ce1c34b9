"""The reaper's sweep of a bucket's job keys (`jobs.s3_blobs`): attempts no manifest names.

The rule is the local attempt folders' (`jobs.reaping.attempt_is_live`): an attempt's keys
stay while the job runs that attempt or is queued before it; otherwise they go, unless they
are the published result set (the attempt the job's manifest names). A job the store no
longer has loses every key, its manifest included (it was deleted, or expired, by a process
that died before removing them).

One listing of the bucket's jobs/ prefix per sweep (every `SWEEP_FILES_EVERY_S`), then the
database; a manifest is read only for a job that has keys of an attempt that is not live,
beside another attempt's or no manifest, so the steady state (one attempt, published)
costs no reads.

The order is what makes it safe: a worker writes the manifest before it records success.
The listing may predate both (the attempt's files without their manifest), but the
database read comes after it, and the manifest is read after that: an attempt the
database no longer calls live is one whose manifest, if it will ever have one, is there.
"""

from __future__ import annotations

from jobs.blobs import BlobStore
from jobs.reaping import attempt_is_live
from jobs.s3_blobs import S3BlobStore
from jobs.store import JobStore


def sweep_remote_attempts(store: JobStore, blobs: BlobStore) -> int:
    """Remove the keys of attempts nothing will ever read; returns how many attempts (and
    deleted jobs) were removed. Nothing to do for the data directory's store."""
    if not isinstance(blobs, S3BlobStore):
        return 0
    stored = blobs.stored_jobs()
    if not stored:
        return 0
    jobs = store.reaping.attempts_of(stored)  # after the listing: see the module docstring
    removed = 0
    for job_id, keys in stored.items():
        found = jobs.get(job_id)
        if found is None:
            blobs.remove_job_dir(job_id)
            removed += 1
            continue
        stale = {a for a in keys.attempts if not attempt_is_live(found, a)}
        if not stale or (keys.manifest and len(keys.attempts) == 1):
            # The one attempt beside a manifest is the published set (or the set is broken,
            # which the job's next attempt, or its deletion, clears): no read needed.
            continue
        # Read whatever the listing said: it may be older than the manifest (see above).
        published = blobs.published(job_id)
        for attempt in stale - {published.attempt if published else None}:
            blobs.remove_attempt(job_id, attempt)
            removed += 1
    return removed
