"""Task bodies: thin, like web views — take the ID, call the real logic, record the outcome."""

from __future__ import annotations

import functools

from jobs.blobs import BlobStore
from jobs.settings import get_settings
from jobs.store import JobStore


@functools.lru_cache(maxsize=1)
def _stores() -> tuple[JobStore, BlobStore]:
    """One connection pool per child process, made after the fork."""
    settings = get_settings()
    store = JobStore(settings.resolved_database_url())
    store.migrate()
    settings.ensure_dirs()
    return store, BlobStore(settings.resolved_data_dir())


def run_job(job_id: str) -> None:
    from worker.execute import execute_job

    store, blobs = _stores()
    execute_job(job_id, store, blobs, get_settings())


def inspect_model(model_id: str) -> None:
    from worker.execute import execute_inspection

    store, blobs = _stores()
    execute_inspection(model_id, store, blobs, get_settings())
