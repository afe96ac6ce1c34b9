"""The whole product path with real processes: upload, submit, poll, results, download."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`deadweight example --out DIR`, as the README runs it."""
    out = tmp_path_factory.mktemp("example")
    subprocess.run([DEADWEIGHT, "example", "--out", str(out)], check=True, timeout=300)
    return out


def _upload(client: httpx.Client, route: str, path: Path) -> dict:  # type: ignore[type-arg]
    with path.open("rb") as fh:
        response = client.post(route, files={"file": (path.name, fh, "application/octet-stream")})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _poll(client: httpx.Client, url: str, done: set[str], timeout: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(url).json()
        if record["status"] in done:
            return record  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"{url} still {record['status']} after {timeout}s: {record}")


def walkthrough(
    base_url: str, example: Path, procs: Processes, tmp_path: Path, token: str | None = None
) -> str:
    """The product path; returns the job's ID. `token`: sent as the Bearer of every request
    (the metrics token; in open mode the API routes ignore it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as client:
        model = _upload(client, "/v1/models", example / "model.pt2")
        data = _upload(client, "/v1/datasets", example / "data.npz")
        evaluation = _upload(client, "/v1/datasets", example / "eval.npz")
        assert data["has_labels"] and data["x_shape"] == [64]

        inspected = _poll(client, f"/v1/models/{model['id']}", {"ready", "invalid"}, 120)
        assert inspected["status"] == "ready", procs.dump_logs()
        assert [layer["name"] for layer in inspected["layers"]] == ["fc1", "fc2"]

        response = client.post(
            "/v1/jobs",
            json={
                "model_id": model["id"],
                "dataset_id": data["id"],
                "eval_dataset_id": evaluation["id"],
                "criterion": "seed",
                "compensate": True,
                "thresholds": [{"mean": 0.1, "std": 0.1}, {"fraction": 0.3}, {"fraction": 0.5}],
            },
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued"

        final = _poll(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed", "cancelled"}, 240)
        assert final["status"] == "succeeded", f"{final}\n{procs.dump_logs()}"
        assert final["started_at"] and final["finished_at"]

        results = client.get(f"/v1/jobs/{job['id']}/results").json()
        assert [c["index"] for c in results["candidates"]] == [0, 1, 2]
        assert results["baseline"]["metric"] > 0.9
        stats = client.get(f"/v1/jobs/{job['id']}/stats").json()
        assert [layer["name"] for layer in stats["layers"]] == ["fc1", "fc2"]
        names = {a["name"] for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()}
        assert {
            "results.json",
            "results.csv",
            "stats.json",
            "stats.csv",
            "stats.png",
            "tradeoff.png",
            "report.html",
            "pruned-0.pt2",
        } <= names

        chosen = results["candidates"][1]
        download = client.get(f"/v1/jobs/{job['id']}/artifacts/{chosen['artifact']}")
        assert download.status_code == 200
        local = tmp_path / "downloaded.pt2"
        local.write_bytes(download.content)
        program = torch.export.load(local)  # trusted: the service wrote this file
        assert sum(p.numel() for p in program.parameters()) == chosen["parameters"]
        assert chosen["parameters"] < results["baseline"]["parameters"]
        failing = _failing_job(client, model["id"], tmp_path)
        assert_metrics(client, job["id"], data["bytes"] + evaluation["bytes"] + failing)
        return str(job["id"])


def _failing_job(client: httpx.Client, model_id: str, tmp_path: Path) -> int:
    """A job that fails in the engine (labels the model's 10 classes cannot have); returns
    its dataset's bytes."""
    path = tmp_path / "wrong-labels.npz"
    numpy.savez(path, x=numpy.zeros((32, 64), numpy.float32), y=numpy.full(32, 57))
    data = _upload(client, "/v1/datasets", path)
    body = {"model_id": model_id, "dataset_id": data["id"], "thresholds": [{"fraction": 0.3}]}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    final = _poll(client, f"/v1/jobs/{response.json()['id']}", {"succeeded", "failed"}, 120)
    assert final["status"] == "failed" and "label 57" in final["error"], final
    return int(data["bytes"])


def assert_metrics(client: httpx.Client, job_id: str, dataset_bytes: int) -> None:
    """/metrics after the walkthrough: the worker's figures (pushed to the store), the
    API's (a 404 included), all on the API's one endpoint."""
    assert client.get(f"/v1/jobs/{'0' * 32}").status_code == 404
    failed = ("deadweight_jobs_finished_total", (("state", "failed"), ("tenant", "default")))
    # A worker pushes a job's figures just after recording its end state: the failed job's
    # may arrive a moment after a poll saw it failed.
    deadline = time.monotonic() + 15
    while True:
        response = client.get("/metrics")
        assert response.status_code == 200
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        if failed in samples or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    finished = ("deadweight_jobs_finished_total", (("state", "succeeded"), ("tenant", "default")))
    assert samples[finished] == 1
    assert samples[failed] == 1
    assert samples["deadweight_job_duration_seconds_count", (("state", "failed"),)] == 1
    assert samples["deadweight_candidates_evaluated_total", ()] == 3
    assert samples["deadweight_jobs", (("state", "succeeded"), ("tenant", "default"))] == 1
    route = (("method", "GET"), ("route", "/v1/jobs/{job_id}"))
    assert samples["deadweight_http_requests_total", (*route, ("status", "404"))] == 1
    assert samples["deadweight_http_requests_total", (*route, ("status", "200"))] >= 1
    assert samples["deadweight_upload_bytes_total", (("kind", "datasets"),)] == dataset_bytes
    assert job_id not in response.text


def test_api_and_separate_worker_with_redis_and_postgres(
    example: Path, processes: Processes, redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    env = base_env(tmp_path / "data")
    env["DEADWEIGHT_BROKER_URL"] = redis_url
    env["DEADWEIGHT_DATABASE_URL"] = postgres_url
    port = free_port()
    api = processes.start("api", [DEADWEIGHT, "serve", "--no-worker", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/readyz", api, processes)
    processes.start("worker", [DEADWEIGHT, "worker"], env)
    walkthrough(f"http://127.0.0.1:{port}", example, processes, tmp_path)


def test_serve_with_embedded_defaults(example: Path, processes: Processes, tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    # JSON logs, and secrets that must never reach them.
    env.update(
        DEADWEIGHT_LOG_FORMAT="json",
        DEADWEIGHT_METRICS_TOKEN=METRICS_TOKEN,
        DEADWEIGHT_WEBHOOK_SECRETS=f"*={WEBHOOK_SECRET}",
    )
    port = free_port()
    api = processes.start("serve", [DEADWEIGHT, "serve", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/readyz", api, processes)
    job_id = walkthrough(f"http://127.0.0.1:{port}", example, processes, tmp_path, METRICS_TOKEN)
    assert (tmp_path / "data" / "deadweight.db").exists()  # SQLite job store
    # Read while the processes run: at shutdown Celery prints one raw notice to stdout.
    assert_json_logs((processes.logs / "serve-0.log").read_text(), job_id)


METRICS_TOKEN = "metrics-token-3f9c1e"
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LW9mLTMyLWJ5dGVzISE="


def assert_json_logs(text: str, job_id: str) -> None:
    """Every line of the API, its embedded workers and their engines is one JSON object of
    the schema, the job's ID runs through all three, and no secret is in any."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    of_job = [line for line in lines if line.get("job_id") == job_id]
    loggers = {line["logger"] for line in of_job}
    assert {"service.submission", "deadweight.worker", "deadweight.engine"} <= loggers, loggers
    queued = next(line for line in of_job if line["logger"] == "service.submission")
    assert len(queued["request_id"]) == 32  # generated: the client sent none
    ended = [line for line in of_job if line["msg"] == f"job {job_id} succeeded"]
    assert [(line["tenant"], line["attempt"]) for line in ended] == [("default", 1)]
    engine = [line for line in of_job if line["logger"] == "deadweight.engine"]
    assert all(line["attempt"] == 1 and line["tenant"] == "default" for line in engine)
    # Celery's "Task deadweight.run_job[...] succeeded" (of every task, whatever the job did).
    assert not [line for line in lines if line["logger"] == "celery.app.trace"]
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and all(line.get("request_id") for line in access)
    assert METRICS_TOKEN not in text and WEBHOOK_SECRET not in text
