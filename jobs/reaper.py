"""The reaper: no job stays `running` without a live worker, none waits for a lost message.

Every worker runs one, in a thread of its main process (`worker.celery_app`), every
`lease_seconds / 2` seconds (at least once a second, at most every 30 s). A pass:

1. ends expired leases (`JobStore.reaping.reap_expired`): a job whose attempt had already
   published its complete result set ends `succeeded` (it died between the rename and the
   write); otherwise the job goes back to the queue while attempts remain (a fresh message
   is sent), else it fails, saying the worker was lost and how often, and its folders are
   removed; a job whose cancellation was asked for ends `cancelled`;
2. re-sends queued jobs whose message was lost (a broker restarted without persistence):
   when the broker's queue is empty but jobs have been queued for longer than two leases,
   they are sent again. A duplicate message is harmless: `JobLifecycle.start` is conditional.
   Model inspections still pending after two leases are sent again likewise;
3. removes finished jobs, and uploads no job refers to, older than `retention_days`;
4. sweeps hidden attempt folders (`.<id>.attempt-<n>[.work]`) that no running attempt
   owns (their job is gone, finished, or ran a later attempt since); every ten minutes
   also the data directory's other leftovers (`jobs.leftovers`): temporary files and
   inspection folders of dead processes, upload holds of API processes that died
   mid-validation, and blobs no record refers to; with an S3 store, also the bucket's keys
   of attempts no manifest names (`jobs.remote_sweep`).

Database outages: a lease can run out while the database is down, because no worker can
renew it then, though every worker is alive. So a reaper ends leases only after it has
reached the database without a failure for one whole lease (`lease_seconds`), since its
own start or its last failed pass: a live worker renews well within that time (its
heartbeat retries every half second while the store is unreachable). A lease still
expired after that belongs to a worker that was lost, or cut off from the database for
longer than a lease while this reaper was not: that attempt counts as lost, the job is
re-queued, and when the cut-off worker comes back its lease is gone, so it stops its engine
and records nothing.

Beside it runs the worker's webhook dispatcher (`jobs.webhook_dispatch`), a thread of its
own that the reaper starts and stops: it sends due deliveries every second or so.

Several reapers (one per worker) are safe together: each step is a conditional UPDATE or
DELETE on the row as read, so only one of them acts on a given expiry or record, and a
message sent twice starts the job once.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jobs.blobs import BlobStore
from jobs.leftovers import sweep_leftovers
from jobs.queue import INSPECT_QUEUE_NAME, Queue
from jobs.reaping import attempt_is_live
from jobs.remote_sweep import sweep_remote_attempts
from jobs.settings import Settings
from jobs.store import JobStore
from jobs.webhook_dispatch import WebhookDispatcher

log = logging.getLogger("deadweight.reaper")

# How often a reaper scans the data directory for leftovers (`jobs.leftovers`).
SWEEP_FILES_EVERY_S = 600.0


@dataclass
class Pass:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0
    recovered: int = 0  # lost after publishing: recorded `succeeded` from the files
    resent: int = 0
    expired_jobs: int = 0
    expired_uploads: int = 0
    swept: int = 0  # attempt folders and temporary files nobody owns
    leftovers: int = 0  # upload holds of dead API processes, blobs no record refers to


def reap_once(
    store: JobStore,
    queue: Queue,
    blobs: BlobStore,
    settings: Settings,
    reap_leases: bool = True,
    sweep_files: bool = True,
) -> Pass:
    """One pass of the reaper; see the module's docstring. Without `reap_leases` expired
    leases are left alone (the `Reaper` thread's grace after a database outage); without
    `sweep_files` the data directory's leftovers wait for a later pass (a scan of every
    blob is too costly for every pass)."""
    out = Pass()
    if reap_leases:
        _end_expired_leases(store, queue, blobs, settings, out)

    if queue.waiting() == 0:
        for job_id in store.reaping.stale_queued(2 * settings.lease_seconds):
            log.warning("job %s was queued but its message is gone: sending it again", job_id)
            queue.enqueue_job(job_id)
            out.resent += 1
    if queue.waiting(queue=INSPECT_QUEUE_NAME) == 0:
        # An inspection has no lease: a model still pending with an empty queue and no
        # live claim lost its message (a duplicate would be harmless anyway).
        claims = settings.inspection_claim_seconds()
        for model_id in store.models.stale_pending(2 * settings.lease_seconds, claims):
            log.warning("model %s is still pending: sending its inspection again", model_id)
            queue.enqueue_inspection(model_id)
            out.resent += 1

    for job_id in store.deletion.expired_jobs(settings.retention_days):
        if store.deletion.delete_job_any_tenant(job_id):
            blobs.remove_job_dir(job_id)
            out.expired_jobs += 1
    for sha256 in store.deletion.expire_unused_uploads(settings.retention_days):
        # Checked and unlinked under the blob's lock: an upload of the same bytes keeps it.
        store.blob_refs.release_blob(sha256, blobs.delete)
        out.expired_uploads += 1
    out.swept = sweep_attempt_folders(store, blobs)
    if sweep_files:
        swept = sweep_leftovers(store, blobs, settings)
        out.swept += swept.temporary + sweep_remote_attempts(store, blobs)
        out.leftovers = swept.holds + swept.blobs
    return out


def _end_expired_leases(
    store: JobStore, queue: Queue, blobs: BlobStore, settings: Settings, out: Pass
) -> None:
    reaped = store.reaping.reap_expired(settings.max_attempts, published=blobs.is_published)
    for job_id in reaped.requeued:
        queue.enqueue_job(job_id)
    for job_id in reaped.succeeded:
        log.warning("job %s: its worker was lost after publishing; recorded succeeded", job_id)
    for job_id in reaped.failed:
        log.warning("job %s failed: its worker was lost %d times", job_id, settings.max_attempts)
    # Failed or cancelled for good: nothing of the job's files is of use to anyone.
    for job_id in reaped.failed + reaped.cancelled:
        blobs.remove_job_dir(job_id)
    out.requeued, out.failed = len(reaped.requeued), len(reaped.failed)
    out.cancelled, out.recovered = len(reaped.cancelled), len(reaped.succeeded)


def sweep_attempt_folders(store: JobStore, blobs: BlobStore) -> int:
    """Remove attempt folders that no running attempt owns; returns how many.

    Attempt n's folders are left alone only while the job runs attempt n, or is queued after
    attempt n - 1 (attempt n then creates them; a folder of that number cannot be stale).
    """
    found = list(blobs.all_attempt_dirs())
    if not found:
        return 0
    jobs = store.reaping.attempts_of(job_id for job_id, _, _ in found)
    removed = 0
    for job_id, attempt, folder in found:
        if not attempt_is_live(jobs.get(job_id), attempt):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class Reaper(threading.Thread):
    """Runs `reap_once` periodically until stopped; errors are logged, never fatal."""

    def __init__(
        self,
        store: JobStore,
        queue: Queue,
        blobs: BlobStore,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(name="deadweight-reaper", daemon=True)
        self._clock = clock
        # Worker children are forked from the process this thread runs in; the store's
        # engine drops its pooled connections in them (jobs.database.create_store_engine).
        self._args = (store, queue, blobs, settings)
        self._halt = threading.Event()
        self.interval = min(30.0, max(1.0, settings.lease_seconds / 2))
        self._grace = float(settings.lease_seconds)
        # Since when every pass reached the database; None after a failure (and at start,
        # when this reaper cannot know whether the database was just down).
        self._reachable_since: float | None = None
        self._swept_at: float | None = None
        # Webhook deliveries are due within seconds, more often than a reaper pass comes.
        self.webhooks = WebhookDispatcher(store, blobs, settings)

    def start(self) -> None:
        super().start()
        self.webhooks.start()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.run_pass()

    def run_pass(self) -> Pass | None:
        """One pass; leases are ended only after a whole lease of reachable database."""
        now = self._clock()
        store = self._args[0]
        try:
            store.ping()
        except Exception:
            if self._reachable_since is not None:
                log.warning("reaper: the job store is unreachable; leases are left alone")
            self._reachable_since = None
            return None
        if self._reachable_since is None:
            self._reachable_since = now
        reap_leases = now - self._reachable_since >= self._grace
        sweep_files = self._swept_at is None or now - self._swept_at >= SWEEP_FILES_EVERY_S
        try:
            done = reap_once(*self._args, reap_leases=reap_leases, sweep_files=sweep_files)
        except Exception:  # the broker or database is down: try again next time
            log.exception("reaper pass failed")
            self._reachable_since = None
            return None
        if sweep_files:
            self._swept_at = now
        if any(vars(done).values()):
            log.info("reaper: %s", done)
        return done

    def stop(self) -> None:
        self._halt.set()
        self.webhooks.stop()
