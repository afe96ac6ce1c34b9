"""GET /metrics: the API's own figures, the store's read at scrape time, and its token."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from jobs.metrics_store import JOB_DURATION, JOBS_FINISHED, Tally
from service.main import create_app
from tests.service.api_helpers import ClientFactory, new_dataset, new_model, npz_bytes
from tests.service.conftest import make_settings

KEY = {"Authorization": "Bearer acme-key"}


def scrape(
    client: TestClient, **headers: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_and_status(make_client: ClientFactory) -> None:
    client = make_client(api_keys="acme=acme-key")
    missing = "0123456789abcdef0123456789abcdef"
    before = scrape(client)
    assert client.get(f"/v1/jobs/{missing}", headers=KEY).status_code == 404
    assert client.get("/v1/jobs").status_code == 401
    response = client.get("/metrics")
    assert missing not in response.text  # IDs never become labels
    after = scrape(client)
    requests = "deadweight_http_requests_total"
    route = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    assert (
        value(after, requests, **route, status="404")
        == value(before, requests, **route, status="404") + 1
    )
    assert value(after, requests, method="GET", route="/v1/jobs", status="401") == 1
    count = "deadweight_http_request_duration_seconds_count"
    assert value(after, count, **route) == 1
    assert value(after, "deadweight_store_up") == 1


def test_uploads_and_jobs_are_counted(make_client: ClientFactory) -> None:
    client = make_client()
    data = npz_bytes()
    dataset = new_dataset(client, data)
    store = client.app.state.store
    store.jobs.add("default", "m" * 32, dataset["id"], None, {"criterion": "seed"})
    tally = Tally()
    tally.count(JOBS_FINISHED, {"state": "failed", "tenant": "default"})
    tally.observe(JOB_DURATION, {"state": "failed"}, 3.0)
    store.metrics.add(tally)
    store.metrics.add(tally)  # increments add up, row by row
    samples = scrape(client)
    assert value(samples, "deadweight_upload_bytes_total", kind="datasets") == dataset["bytes"]
    assert value(samples, "deadweight_jobs", state="queued", tenant="default") == 1
    assert value(samples, "deadweight_queue_depth") == 1
    finished = "deadweight_jobs_finished_total"
    assert value(samples, finished, state="failed", tenant="default") == 2
    buckets = "deadweight_job_duration_seconds_bucket"
    assert value(samples, buckets, state="failed", le="1.0") == 0  # every bound is present
    assert value(samples, buckets, state="failed", le="5.0") == 2
    assert value(samples, "deadweight_job_duration_seconds_sum", state="failed") == 6.0


def test_models_by_status_and_the_brokers_queues(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client()
    before = scrape(client)
    assert value(before, "deadweight_models", status="pending") == 0  # present at 0
    assert value(before, "deadweight_broker_up") == 1
    assert ("deadweight_broker_messages", frozenset({("queue", "inspections")})) in before
    new_model(client, model_bytes, ready=False)  # no worker: its inspection waits
    ready = new_model(client, model_bytes, ready=True)  # same bytes, a record of its own
    samples = scrape(client)
    assert value(samples, "deadweight_models", status="pending") == 1
    assert value(samples, "deadweight_models", status="ready") == 1
    # Both uploads sent an inspection message and nobody took them.
    assert value(samples, "deadweight_broker_messages", queue="inspections") == 2
    assert value(samples, "deadweight_broker_messages", queue="jobs") == 0
    assert ready["status"] == "ready"


def test_a_broker_that_is_down_shows_as_down_and_the_scrape_still_answers(
    make_client: ClientFactory,
) -> None:
    client = make_client(broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    samples = scrape(client)
    assert value(samples, "deadweight_broker_up") == 0
    assert value(samples, "deadweight_store_up") == 1


def test_the_metrics_token_protects_the_endpoint_and_tenant_keys_do_not_open_it(
    make_client: ClientFactory,
) -> None:
    client = make_client(api_keys="acme=acme-key", metrics_token="scrape-token")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=KEY).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert scrape(client, Authorization="Bearer scrape-token")
    # The token is not kept in the settings the routes read.
    assert client.app.state.settings.metrics_token is None


def test_open_mode_lets_a_scraper_name_another_host_only_with_a_token(tmp_path: Path) -> None:
    def get(token: str | None, **headers: str) -> int:
        settings = make_settings(tmp_path / f"data-{token}", metrics_token=token)
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            return client.get("/metrics", headers=headers).status_code

    remote = {"Host": "10.0.0.5:8000"}
    assert get(None, **remote) == 403  # without a token, the loopback guard stands
    assert get("t", **remote, Authorization="Bearer t") == 200
    page = {"Origin": "https://evil.example", "Authorization": "Bearer t"}
    assert get("t", **remote, **page) == 403  # a web page's request is still refused
