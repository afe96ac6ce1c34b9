"""The worker's Celery app: the shared configuration from `jobs.queue`, plus the task bodies.

Importing this module must stay cheap and must not touch torch or CUDA: the worker's parent
process only supervises (and runs the reaper, `jobs.reaper`); each job runs in a fresh child
(max_tasks_per_child=1) that hands the engine to its sandboxed process.
"""

from __future__ import annotations

from typing import Any

import celery
from celery import signals

from jobs.blobs import BlobStore
from jobs.queue import INSPECT_MODEL_TASK, RUN_JOB_TASK, Queue, make_celery
from jobs.reaper import Reaper
from jobs.settings import get_settings
from jobs.store import JobStore

_reaper: list[Reaper] = []


def create_worker_app() -> celery.Celery:
    settings = get_settings()
    app = make_celery(settings)
    if settings.resolved_broker_url().startswith("filesystem"):
        # The filesystem transport has no broadcast exchange for remote control.
        app.conf.worker_enable_remote_control = False
    # Reaching the store from the task: built lazily in the child, once per process.
    from worker import tasks

    app.task(name=RUN_JOB_TASK, acks_late=True)(tasks.run_job)
    app.task(name=INSPECT_MODEL_TASK, acks_late=True)(tasks.inspect_model)
    return app


app = create_worker_app()


def _start_reaper(**_: Any) -> None:
    """Every worker's main process sweeps for lost jobs (see jobs.reaper for why several
    reapers are safe together)."""
    settings = get_settings()
    store = JobStore(settings.resolved_database_url())
    store.migrate()
    reaper = Reaper(store, Queue(app), BlobStore(settings.resolved_data_dir()), settings)
    reaper.start()
    _reaper.append(reaper)


def _stop_reaper(**_: Any) -> None:
    for reaper in _reaper:
        reaper.stop()


signals.worker_ready.connect(_start_reaper, weak=False)
signals.worker_shutdown.connect(_stop_reaper, weak=False)
