"""The worker's Celery app: the shared configuration from `jobs.queue`, its tasks
(`worker.tasks`, imported when a worker starts) and the reaper of its main process.

Importing this module must stay cheap and must not touch torch or CUDA: the worker's parent
process only supervises (and runs the reaper, `jobs.reaper`); each job runs in a fresh child
(max_tasks_per_child=1) that hands the engine to its sandboxed process. That child starts
its engine as soon as it starts (`worker.sandbox.standby`), so the engine has imported torch
by the time a message comes.
"""

from __future__ import annotations

import logging
from typing import Any

import celery
from celery import signals

from jobs.blob_stores import open_blob_store
from jobs.blobs import BlobStore
from jobs.logging_setup import configure_logging
from jobs.queue import Queue, make_celery
from jobs.reaper import Reaper
from jobs.settings import get_settings
from jobs.store import JobStore
from worker.sandbox import standby

TASK_MODULES = ["worker.tasks"]

_reaper: list[Reaper] = []


def create_worker_app() -> celery.Celery:
    settings = get_settings()
    app = make_celery(settings, include=TASK_MODULES)
    if settings.resolved_broker_url().startswith("filesystem"):
        # The filesystem transport has no broadcast exchange for remote control.
        app.conf.worker_enable_remote_control = False
    return app


app = create_worker_app()


def _start_reaper(**_: Any) -> None:
    """Every worker's main process sweeps for lost jobs (see jobs.reaper for why several
    reapers are safe together)."""
    settings = get_settings()
    store = JobStore(settings.resolved_database_url())
    store.migrate()
    reaper = Reaper(store, Queue(app), open_blob_store(settings), settings)
    reaper.start()
    _reaper.append(reaper)


def _stop_reaper(**_: Any) -> None:
    for reaper in _reaper:
        reaper.stop()


def _warm_engine(**_: Any) -> None:
    """Each pool process starts the engine of its one task while it waits for the message;
    the task falls back to a fresh engine if this one cannot start."""
    try:
        settings = get_settings()
        standby.prepare(BlobStore(settings.resolved_data_dir()).tmp_dir, settings.engine_nice)
    except Exception:
        logging.getLogger("deadweight.worker").exception("no standby engine; jobs start cold")


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """The service's format for every logger, Celery's included (a receiver of this signal
    keeps Celery from configuring logging itself); pool children run it again."""
    configure_logging(get_settings().log_format, loglevel or logging.INFO)
    # "Task deadweight.run_job[...] succeeded" speaks of the message: a job that failed is a
    # task that returned. `worker.execute` logs each job's real end state instead.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)


signals.setup_logging.connect(_setup_logging, weak=False)
signals.worker_ready.connect(_start_reaper, weak=False)
signals.worker_process_init.connect(_warm_engine, weak=False)
signals.worker_shutdown.connect(_stop_reaper, weak=False)
