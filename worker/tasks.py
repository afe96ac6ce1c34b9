"""The worker's Celery tasks, thin like web views: take the ID, call the real logic.

    deadweight.run_job        (queue `deadweight`)          -> worker.execute.execute_job
    deadweight.inspect_model  (queue `deadweight.inspect`)  -> worker.inspection.execute_inspection

The names live in `jobs.queue`, from which the API sends them without importing the worker;
the app that registers them is `worker.celery_app` (its `include` imports this module when
a worker starts). `acks_late`: a message is acknowledged only once its job has ended.
"""

from __future__ import annotations

import functools

from jobs.blob_stores import open_blob_store
from jobs.blobs import BlobStore
from jobs.queue import INSPECT_MODEL_TASK, RUN_JOB_TASK
from jobs.settings import get_settings
from jobs.store import JobStore
from worker.celery_app import app
from worker.execute import execute_job
from worker.inspection import execute_inspection


@functools.lru_cache(maxsize=1)
def _stores() -> tuple[JobStore, BlobStore]:
    """One connection pool per child process, made after the fork."""
    settings = get_settings()
    store = JobStore(settings.resolved_database_url())
    store.migrate()
    settings.ensure_dirs()
    return store, open_blob_store(settings)


@app.task(name=RUN_JOB_TASK, acks_late=True)  # type: ignore[untyped-decorator]
def run_job(job_id: str) -> None:
    """Run the fairest queued job (the named one first among equals) to its end state."""
    store, blobs = _stores()
    execute_job(job_id, store, blobs, get_settings())


@app.task(name=INSPECT_MODEL_TASK, acks_late=True)  # type: ignore[untyped-decorator]
def inspect_model(model_id: str) -> None:
    """Inspect the fairest pending model (the named one first among equals)."""
    store, blobs = _stores()
    execute_inspection(model_id, store, blobs, get_settings())
