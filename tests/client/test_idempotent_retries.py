"""Retries that cannot do a thing twice: a submission whose answer was lost is sent again with
the same `Idempotency-Key`, and the service answers with the job it already made."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deadweight_client import Client, RetryPolicy

from tests.client.conftest import API_KEY, FAST_RETRY, TENANT, Service
from tests.client.proxy import Proxy
from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(service: Service) -> Iterator[Proxy]:
    started = Proxy(int(service.url.rsplit(":", 1)[1]))
    try:
        yield started
    finally:
        started.close()


def _job_ids(client: Client) -> set[str]:
    return {job.id for job in client.list_jobs(limit=200)}


def test_a_submission_whose_answer_was_lost_makes_one_job(
    proxy: Proxy, client: Client, uploaded: tuple[str, str]
) -> None:
    model, data = uploaded
    proxy.open()
    before = _job_ids(client)
    proxy.drop_next_submission_answer()
    with Client(proxy.url, API_KEY, retry=FAST_RETRY) as through_proxy:
        job = through_proxy.submit(model, data, thresholds="f0.3")
    assert proxy.submissions == 2  # the first reached the service, then the retry
    assert _job_ids(client) - before == {job.id}  # one job, and it is the one returned
    client.job(job.id).cancel()


def test_the_same_key_twice_returns_the_first_job(
    client: Client, uploaded: tuple[str, str]
) -> None:
    model, data = uploaded
    before = _job_ids(client)
    first = client.submit(model, data, thresholds="f0.3", idempotency_key="step-7-run-1")
    again = client.submit(model, data, thresholds="f0.3", idempotency_key="step-7-run-1")
    assert again.id == first.id
    assert _job_ids(client) - before == {first.id}
    other = client.submit(model, data, thresholds="f0.3", idempotency_key="step-7-run-2")
    assert other.id != first.id
    for job in (first, other):
        job.cancel()


def test_a_refused_connection_is_retried_until_the_service_answers(proxy: Proxy) -> None:
    opener = threading.Timer(1.0, proxy.open)
    opener.start()
    started = time.monotonic()
    retry = RetryPolicy(retries=8, backoff=0.2, max_delay=0.5)
    with Client(proxy.url, API_KEY, retry=retry) as client:
        jobs = client.list_jobs()
    assert time.monotonic() - started >= 1.0
    assert isinstance(jobs, list)
    opener.join()


class _Recorder(httpx.HTTPTransport):
    """httpx's own transport, noting what went over it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        key = request.headers.get("Idempotency-Key")
        self.sent.append((request.method, request.url.path, response.status_code, key))
        return response


def test_a_submission_on_a_model_being_inspected_waits_for_the_inspection(
    tmp_path: Path, service: Service
) -> None:
    """A service whose inspection worker is not up yet answers 409 `model_not_ready`; the
    client waits it out with the same key, and submits once the worker has inspected."""
    procs = Processes(tmp_path)
    env = base_env(tmp_path / "data")
    env["DEADWEIGHT_API_KEYS"] = f"{TENANT}={API_KEY}"
    port = free_port()
    try:
        api = procs.start("serve", [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)], env)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", api, procs)
        recorder = _Recorder()
        with Client(url, API_KEY, transport=recorder, retry=FAST_RETRY) as client:
            model = client.upload_model(service.files / "model.pt2", wait=False)
            data = client.upload_dataset(service.files / "data.npz")
            assert model["status"] == "pending"  # no worker: it stays so until one starts
            inspector = threading.Timer(
                1.0,
                lambda: procs.start(
                    "inspections", [DEADWEIGHT, "worker", "--queues", "inspections"], env
                ),
            )
            inspector.start()
            job = client.submit(model, data, thresholds="f0.3")  # waits the 409s out
            inspector.join()
            job.cancel()  # no job worker here: it ends cancelled from the queue
    finally:
        procs.stop_all()
    submissions = [s for s in recorder.sent if s[:2] == ("POST", "/v1/jobs")]
    assert submissions[0][2] == 409 and submissions[-1][2] == 202
    assert {status for _, _, status, _ in submissions[:-1]} == {409}
    assert len({key for *_, key in submissions}) == 1  # one key for every attempt
    writes = [s for s in recorder.sent if s[0] == "POST" and not s[1].endswith("/cancel")]
    assert len(writes) >= 4 and all(key for *_, key in writes)  # uploads too
