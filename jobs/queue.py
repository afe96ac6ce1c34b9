"""The Celery side shared by the API (sends) and the workers (consume).

Only configuration and sending live here; the task bodies are `worker.tasks`, registered
under the names below by their decorators. A message carries one ID: everything else is
read from the job store, which stays the system of record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import celery

from jobs.settings import Settings

RUN_JOB_TASK = "deadweight.run_job"
INSPECT_MODEL_TASK = "deadweight.inspect_model"
QUEUE_NAME = "deadweight"
# Inspections have a queue of their own, so a worker that serves only it (the embedded
# one, or `deadweight worker --queues inspections`) never waits behind a job of hours.
INSPECT_QUEUE_NAME = "deadweight.inspect"
QUEUES = {"jobs": QUEUE_NAME, "inspections": INSPECT_QUEUE_NAME}


def make_celery(settings: Settings, include: Sequence[str] = ()) -> celery.Celery:
    """A Celery app configured the same way in the API and in every worker; `include`
    names the modules a worker imports at start (its tasks), by name, so the API's app
    never imports them."""
    app = celery.Celery(
        "deadweight", broker=settings.resolved_broker_url(), include=list(include) or None
    )
    app.conf.update(
        # JSON only: a pickled message would let whoever can write to the broker run code.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # No result backend: job state lives in the job store, which answers "unknown job".
        result_backend=None,
        task_ignore_result=True,
        # Ack only once the job has ended, so a worker that dies mid-job leaves the message
        # to be redelivered instead of losing the job...
        task_acks_late=True,
        # ...including when the child process is killed (OOM, hard time limit).
        task_reject_on_worker_lost=True,
        # Jobs run for minutes to hours: a worker must not hoard messages another idle
        # worker could start.
        worker_prefetch_multiplier=1,
        # The soft limit raises inside the job so it can fail cleanly; the hard limit kills
        # a job that ignores it.
        task_soft_time_limit=settings.job_soft_time_limit,
        task_time_limit=settings.job_time_limit,
        # Redis: visibility timeout above the hard limit; filesystem: the shared folders.
        broker_transport_options=settings.broker_transport_options(),
        # A worker started before Redis (docker compose) waits for it instead of exiting.
        broker_connection_retry_on_startup=True,
        # One job per child process: its memory goes back to the OS, and a job that
        # corrupted its process (CUDA state, leaked threads) cannot poison the next.
        worker_max_tasks_per_child=1,
        task_default_queue=QUEUE_NAME,
        task_routes={INSPECT_MODEL_TASK: {"queue": INSPECT_QUEUE_NAME}},
        # The service configures logging; Celery must not replace its handlers.
        worker_hijack_root_logger=False,
    )
    return app


class Queue:
    """Sends work to the workers. The message is the ID alone."""

    def __init__(self, app: celery.Celery) -> None:
        self._app = app

    def enqueue_job(self, job_id: str) -> None:
        self._send(RUN_JOB_TASK, job_id)

    def enqueue_inspection(self, model_id: str) -> None:
        self._send(INSPECT_MODEL_TASK, model_id)

    def _send(self, task_name: str, record_id: str) -> None:
        self._app.send_task(task_name, args=[record_id])

    def waiting(self, timeout: float = 2.0, queue: str = QUEUE_NAME) -> int:
        """Messages waiting in a queue (not those a worker holds unacknowledged)."""
        options: dict[str, Any] = {"socket_connect_timeout": timeout}
        with self._app.connection_for_write(transport_options=options) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            with connection.channel() as channel:
                # Not passive: after a broker restart the queue does not exist yet, and
                # declaring it (as every worker does) is what "empty" looks like.
                declared = channel.queue_declare(queue, durable=True, auto_delete=False)
                return int(declared.message_count)

    def ping(self, timeout: float = 2.0) -> None:
        """Raise if the broker cannot be reached within about `timeout` seconds."""
        options: dict[str, Any] = {"socket_connect_timeout": timeout}
        with self._app.connection_for_write(transport_options=options) as connection:
            # One try, no back-off sleep: /readyz must answer quickly when Redis is down.
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
