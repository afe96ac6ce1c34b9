"""`deadweight submit` and `deadweight jobs` against a real service: the exit statuses a
pipeline branches on (0 succeeded, 1 failed or cancelled, 2 bad input, 3 unreachable) and
the JSON they print."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.client.conftest import Service
from tests.integration.conftest import DEADWEIGHT, free_port

pytestmark = pytest.mark.integration


def _run(
    service: Service, *args: str | Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADWEIGHT_")}
    env.update(service.env())
    return subprocess.run(
        [DEADWEIGHT, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_submit_waits_downloads_and_prints_json(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _run(
        service,
        "submit",
        service.files / "model.pt2",
        service.files / "data.npz",
        "--thresholds",
        "f0.2,f0.5",
        "--wait",
        "--download",
        out,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert job["config"]["thresholds"] == [{"fraction": 0.2}, {"fraction": 0.5}]
    assert {Path(p).name for p in job["downloaded"]} >= {"results.json", "results.csv"}
    assert all(Path(p).is_file() for p in job["downloaded"])
    assert "100%" in done.stderr  # the progress bar, on stderr

    # The same job through `jobs`: show, results, list, download, in JSON and as text.
    shown = _run(service, "jobs", "show", job["id"], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job["id"]
    results = _run(service, "jobs", "results", job["id"], "--json")
    assert json.loads(results.stdout) == json.loads((out / "results.json").read_text())
    table = _run(service, "jobs", "results", job["id"])
    assert table.returncode == 0 and "baseline" in table.stdout
    listed = _run(service, "jobs", "list", "--status", "succeeded", "--json")
    assert job["id"] in {j["id"] for j in json.loads(listed.stdout)}
    assert all(j["status"] == "succeeded" for j in json.loads(listed.stdout))
    fetched = _run(service, "jobs", "download", job["id"], "stats.json", "--out", tmp_path / "d")
    assert fetched.returncode == 0 and (tmp_path / "d" / "stats.json").is_file()
    assert _run(service, "jobs", "wait", job["id"]).returncode == 0


def test_a_failed_job_exits_1(service: Service, uploaded: tuple[str, str]) -> None:
    model, _ = uploaded
    # IDs instead of files: the upload is reused; labels past the model's 4 classes fail it.
    done = _run(service, "submit", model, service.files / "far_labels.npz", "--wait")
    assert done.returncode == 1, done.stderr
    assert "failed" in done.stderr
    job_id = done.stdout.split()[0]
    assert _run(service, "jobs", "wait", job_id).returncode == 1


def test_a_cancelled_job_exits_1(service: Service, uploaded: tuple[str, str]) -> None:
    model, data = uploaded
    submitted = _run(
        service, "submit", model, data, "--search", "--recover-epochs", "100", "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    cancelled = _run(service, "jobs", "cancel", job_id, "--json")
    assert cancelled.returncode == 0
    record = json.loads(cancelled.stdout)  # a queued job ends at once, a running one soon
    assert record["status"] == "cancelled" or record["cancel_requested"]
    waited = _run(service, "jobs", "wait", job_id, "--json")
    assert waited.returncode == 1
    assert json.loads(waited.stdout)["status"] == "cancelled"


@pytest.mark.parametrize(
    "args",
    [
        ["submit"],  # argparse: MODEL and DATA missing
        ["jobs", "frobnicate"],  # argparse: no such verb
        ["jobs", "show", "no-such-job"],  # 404
        ["submit", "MODEL_ID", "no/such/file.npz"],  # not a file, not an ID
        ["submit", "no-such-model", "no-such-data"],  # 404 from the service
    ],
)
def test_bad_input_exits_2(service: Service, args: list[str]) -> None:
    done = _run(service, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip()


def test_a_refused_job_exits_2_with_the_services_reason(
    service: Service, uploaded: tuple[str, str]
) -> None:
    model, data = uploaded
    bad_text = _run(service, "submit", model, data, "--thresholds", "f0.2,oops")
    assert bad_text.returncode == 2 and "oops" in bad_text.stderr
    refused = _run(service, "submit", model, data, "--thresholds", "f1.5")  # a fraction < 1
    assert refused.returncode == 2
    assert "422" in refused.stderr
    # This service names no MLflow tracking server: the flags reach it, and it says so.
    untracked = _run(service, "submit", model, data, "--mlflow-experiment", "pruning")
    assert untracked.returncode == 2 and "DEADWEIGHT_MLFLOW_TRACKING_URI" in untracked.stderr
    lone = _run(service, "submit", model, data, "--mlflow-run-name", "r1")
    assert lone.returncode == 2 and "give both" in lone.stderr


def test_an_unreachable_service_exits_3(service: Service) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for args in (["jobs", "list"], ["submit", "a", "b"]):
        done = _run(service, *args, "--url", closed, "--retries", "1")
        assert done.returncode == 3, done.stderr
        assert closed in done.stderr and "no answer after 2 attempts" in done.stderr
