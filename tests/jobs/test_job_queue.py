"""The Celery side: configuration, broker ping, and what a message carries (real brokers)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import celery
import kombu.exceptions
import pytest
import redis
from kombu.connection import Connection

from jobs.queue import (
    INSPECT_MODEL_TASK,
    INSPECT_QUEUE_NAME,
    QUEUE_NAME,
    RUN_JOB_TASK,
    Queue,
    make_celery,
)
from jobs.settings import Settings

JOB_ID = secrets.token_hex(16)


def test_celery_configuration(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, job_soft_time_limit=100, job_time_limit=130)
    conf = make_celery(settings).conf
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result is True
    assert not conf.result_backend
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 130)
    assert conf.worker_max_tasks_per_child == 1
    assert conf.task_default_queue == QUEUE_NAME == "deadweight"
    assert conf.task_routes == {INSPECT_MODEL_TASK: {"queue": INSPECT_QUEUE_NAME}}
    assert conf.worker_hijack_root_logger is False
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_transport_options == settings.broker_transport_options()


def test_filesystem_broker_message_is_the_id_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    queue = Queue(make_celery(settings))
    queue.ping()
    queue.enqueue_job(JOB_ID)
    files = list((tmp_path / "broker" / "queue").iterdir())
    assert len(files) == 1
    envelope = json.loads(files[0].read_text())
    assert envelope["headers"]["task"] == RUN_JOB_TASK
    assert envelope["content-type"] == "application/json"
    assert envelope["properties"]["body_encoding"] == "base64"
    args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    assert (args, kwargs) == ([JOB_ID], {})


@pytest.fixture
def redis_app(redis_url: str, tmp_path: Path) -> Iterator[celery.Celery]:
    """An app on the real Redis, sending to a queue of its own (deleted afterwards)."""
    app = make_celery(Settings(data_dir=tmp_path, broker_url=redis_url))
    name = f"deadweight-test-{secrets.token_hex(6)}"
    app.conf.task_default_queue = name
    app.conf.task_routes = {INSPECT_MODEL_TASK: {"queue": f"{name}.inspect"}}
    try:
        yield app
    finally:
        client = redis.Redis.from_url(redis_url)
        for queue in (name, f"{name}.inspect"):
            # The queue and the exchange bindings kombu recorded for it.
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()


@pytest.mark.redis
def test_ping_real_redis(redis_app: celery.Celery) -> None:
    Queue(redis_app).ping()


@pytest.mark.redis
def test_ping_unreachable_redis_fails_fast(tmp_path: Path) -> None:
    app = make_celery(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0"))
    started = time.monotonic()
    with pytest.raises(kombu.exceptions.OperationalError):
        Queue(app).ping(timeout=1.0)
    assert time.monotonic() - started < 5


@pytest.mark.redis
@pytest.mark.parametrize(
    ("send", "task_name", "suffix"),
    [
        (Queue.enqueue_job, RUN_JOB_TASK, ""),
        # Inspections have a queue of their own: they never wait behind long jobs.
        (Queue.enqueue_inspection, INSPECT_MODEL_TASK, ".inspect"),
    ],
)
def test_redis_round_trip_carries_only_the_id(
    redis_app: celery.Celery, redis_url: str, send: object, task_name: str, suffix: str
) -> None:
    assert callable(send)
    send(Queue(redis_app), JOB_ID)
    name = redis_app.conf.task_default_queue + suffix
    with Connection(redis_url) as connection:
        message = connection.default_channel.basic_get(name, no_ack=True)
    assert message is not None, "the message did not reach the queue"
    assert message.content_type == "application/json"
    assert message.headers["task"] == task_name
    args, kwargs, _embed = json.loads(message.body)
    assert (args, kwargs) == ([JOB_ID], {})
