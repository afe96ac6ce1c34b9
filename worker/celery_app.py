"""The worker's Celery app: the shared configuration from `jobs.queue`, plus the task bodies.

Importing this module must stay cheap and must not touch torch or CUDA: the worker's parent
process only supervises; each job runs in a fresh child (max_tasks_per_child=1) that imports
the engine when its task starts.
"""

from __future__ import annotations

import celery

from jobs.queue import INSPECT_MODEL_TASK, RUN_JOB_TASK, make_celery
from jobs.settings import get_settings


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
