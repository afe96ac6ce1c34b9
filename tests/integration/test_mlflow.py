"""MLflow tracking with real processes: `mlflow server` (SQLite backend, local artifacts) and
`deadweight serve` pointed at it; a job submitted with `mlflow` through the Python client is
read back with MLflow's own client, and what it logged must be what the job published."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deadweight_client import Client

from service.result_schemas import MlflowRunPublic
from tests.client.conftest import write_files
from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http

pytest.importorskip("mlflow", reason="the [dev] extra's mlflow server is not installed")
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
EXPERIMENT, RUN_NAME = "deadweight/integration", "tiny mlp, two fractions"


@dataclass(frozen=True)
class TrackedJob:
    tracking_uri: str
    job_id: str
    results: dict[str, Any]
    published: Path  # the job's files as the API serves them


def _mlflow_server(procs: Processes, root: Path, port: int) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADWEIGHT_")}
    # One server process, without the job runner a server starts beside it (for its GenAI
    # evaluations): the test needs the tracking API and the artifact proxy only.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return procs.start("mlflow", command, env)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackedJob]:
    root = tmp_path_factory.mktemp("mlflow")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    mlflow_port, api_port = free_port(), free_port()
    uri, api = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}"
    env = base_env(root / "data") | {"DEADWEIGHT_MLFLOW_TRACKING_URI": uri}
    try:
        # Both start at once: the MLflow server takes the longer (its imports, its schema).
        server = _mlflow_server(procs, root, mlflow_port)
        service = procs.start("serve", [DEADWEIGHT, "serve", "--port", str(api_port)], env)
        (root / "files").mkdir()
        files = write_files(root / "files")
        wait_http(f"{api}/healthz", service, procs)
        with Client(api) as client:
            model = client.upload_model(files / "model.pt2")
            data = client.upload_dataset(files / "data.npz")
            wait_http(f"{uri}/health", server, procs, timeout=180)
            job = client.submit(
                model,
                data,
                thresholds="f0.3,f0.6",
                mlflow={"experiment": EXPERIMENT, "run_name": RUN_NAME},
            )
            job.wait(timeout=240)
            assert job.succeeded, f"{job.status}: {job.error}\n{procs.dump_logs()}"
            published = root / "published"
            published.mkdir()
            for artifact in job.artifacts():
                job.download(artifact["name"], published)
            yield TrackedJob(uri, job.id, job.results(), published)
    finally:
        procs.stop_all()


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_the_run_s_figures_are_the_job_s_results(tracked: TrackedJob) -> None:
    results = tracked.results
    assert results["notes"] == []  # nothing failed to log
    named = MlflowRunPublic.model_validate(results["mlflow"])
    assert set(results["mlflow"]) == set(MlflowRunPublic.model_fields)
    client = MlflowClient(tracked.tracking_uri)
    run = client.get_run(named.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == RUN_NAME
    assert run.info.experiment_id == named.experiment_id
    assert client.get_experiment(named.experiment_id).name == EXPERIMENT
    assert named.run_url == (
        f"{tracked.tracking_uri}/#/experiments/{named.experiment_id}/runs/{named.run_id}"
    )
    assert run.data.tags["deadweight.job_id"] == tracked.job_id
    params = run.data.params
    assert json.loads(params["thresholds"]) == [{"fraction": 0.3}, {"fraction": 0.6}]
    assert (params["criterion"], params["compensate"]) == (
        results["criterion"],
        results["compensate"],
    )
    assert (params["metric"], params["recovery"]) == (results["metric"], "none")
    assert float(params["max_metric_drop"]) == results["max_metric_drop"]

    candidates = results["candidates"]
    assert [c["index"] for c in candidates] == [0, 1]
    for key in ("metric", "metric_drop", "parameters", "bytes", "macs", "size_reduction"):
        expected = [(c["index"], float(c[key])) for c in candidates]
        assert _history(client, named.run_id, f"candidate.{key}") == expected, key
    for key in ("metric", "parameters", "bytes", "macs"):
        assert _history(client, named.run_id, f"baseline.{key}") == [
            (0, float(results["baseline"][key]))
        ]
    # Measured latency, flattened as results.csv names it.
    latency = [(c["index"], c["latency_ms"]["batch_1"]["median"]) for c in candidates]
    assert _history(client, named.run_id, "candidate.latency_1_median_ms") == latency
    baseline_p90 = results["baseline"]["latency_ms"]["batch"]["p90"]
    assert _history(client, named.run_id, "baseline.latency_batch_p90_ms") == [(0, baseline_p90)]
    chosen = results["recommended"]
    assert chosen is not None  # data labelled by the model itself: a cut within the budget
    assert run.data.metrics["recommended.index"] == chosen
    assert run.data.metrics["recommended.parameters"] == candidates[chosen]["parameters"]
    assert not any(math.isnan(v) for v in run.data.metrics.values())


def test_the_run_s_files_are_the_job_s_files(tracked: TrackedJob, tmp_path: Path) -> None:
    run_id = tracked.results["mlflow"]["run_id"]
    client = MlflowClient(tracked.tracking_uri)
    recommended = tracked.results["candidates"][tracked.results["recommended"]]["artifact"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert top == {
        "results.json",
        "results.csv",
        "report.html",
        "stats.png",
        "tradeoff.png",
        "model",
    }
    assert [a.path for a in client.list_artifacts(run_id, "model")] == [f"model/{recommended}"]
    for logged in (
        "results.json",
        "results.csv",
        "report.html",
        "stats.png",
        "tradeoff.png",
        f"model/{recommended}",
    ):
        local = Path(client.download_artifacts(run_id, logged, str(tmp_path)))
        # Byte for byte what the API serves: results.json as published, with the run's IDs.
        assert local.read_bytes() == (tracked.published / Path(logged).name).read_bytes(), logged
