"""The reaper: no job stays `running` without a live worker, none waits for a lost message.

Every worker runs one, in a thread of its main process (`worker.celery_app`), every
`lease_seconds / 2` seconds (at least once a second, at most every 30 s). A pass:

1. ends expired leases (`JobStore.reap_expired`): the job goes back to the queue while
   attempts remain (a fresh message is sent), else it fails, saying the worker was lost
   and how often; a job whose cancellation was asked for ends `cancelled`;
2. re-sends queued jobs whose message was lost (a broker restarted without persistence):
   when the broker's queue is empty but jobs have been queued for longer than two leases,
   they are sent again. A duplicate message is harmless: `start_job` is conditional.
   Model inspections still pending after two leases are sent again likewise;
3. removes finished jobs, and uploads no job refers to, older than `retention_days`.

Several reapers (one per worker) are safe together: each step is a conditional UPDATE or
DELETE on the row as read, so only one of them acts on a given expiry or record, and a
message sent twice starts the job once.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass

from jobs.blobs import BlobStore
from jobs.queue import Queue
from jobs.settings import Settings
from jobs.store import JobStore

log = logging.getLogger("deadweight.reaper")


@dataclass
class Pass:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0
    resent: int = 0
    expired_jobs: int = 0
    expired_uploads: int = 0


def reap_once(store: JobStore, queue: Queue, blobs: BlobStore, settings: Settings) -> Pass:
    """One pass of the reaper; see the module's docstring."""
    out = Pass()
    reaped = store.reap_expired(settings.max_attempts)
    for job_id in reaped.requeued:
        queue.enqueue_job(job_id)
    for job_id in reaped.failed:
        log.warning("job %s failed: its worker was lost %d times", job_id, settings.max_attempts)
    out.requeued, out.failed = len(reaped.requeued), len(reaped.failed)
    out.cancelled = len(reaped.cancelled)
    for job_id in reaped.cancelled:
        _remove_partial(blobs, job_id)

    if queue.waiting() == 0:
        for job_id in store.stale_queued(2 * settings.lease_seconds):
            log.warning("job %s was queued but its message is gone: sending it again", job_id)
            queue.enqueue_job(job_id)
            out.resent += 1
        # An inspection has no lease: one still pending with an empty queue is either
        # running right now (a second one is harmless) or lost.
        for model_id in store.stale_pending_models(2 * settings.lease_seconds):
            log.warning("model %s is still pending: sending its inspection again", model_id)
            queue.enqueue_inspection(model_id)
            out.resent += 1

    for job_id in store.expired_jobs(settings.retention_days):
        if store.delete_job_any_tenant(job_id):
            _remove_partial(blobs, job_id)
            blobs.remove_job_dir(job_id)
            out.expired_jobs += 1
    for sha256 in store.expire_unused_uploads(settings.retention_days):
        if not store.blob_in_use(sha256):
            blobs.delete(sha256)
        out.expired_uploads += 1
    return out


def _remove_partial(blobs: BlobStore, job_id: str) -> None:
    """Staging and working folders of a job's earlier attempts (`.<id>.attempt-<n>*`)."""
    for folder in blobs.jobs_dir.glob(f".{job_id}.attempt-*"):
        shutil.rmtree(folder, ignore_errors=True)


class Reaper(threading.Thread):
    """Runs `reap_once` periodically until stopped; errors are logged, never fatal."""

    def __init__(self, store: JobStore, queue: Queue, blobs: BlobStore, settings: Settings):
        super().__init__(name="deadweight-reaper", daemon=True)
        # Worker children are forked from the process this thread runs in; the store's
        # engine drops its pooled connections in them (jobs.database.create_store_engine).
        self._args = (store, queue, blobs, settings)
        self._halt = threading.Event()
        self.interval = min(30.0, max(1.0, settings.lease_seconds / 2))

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                done = reap_once(*self._args)
            except Exception:  # the broker or database is down: try again next time
                log.exception("reaper pass failed")
                continue
            if any(vars(done).values()):
                log.info("reaper: %s", done)

    def stop(self) -> None:
        self._halt.set()
