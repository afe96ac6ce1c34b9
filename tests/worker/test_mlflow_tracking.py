"""MLflow tracking when it cannot happen: a job whose tracking server is down, stalled or not
configured still succeeds, and its results.json says why in its notes. (A real run on a real
`mlflow server`: tests/integration/test_mlflow.py.)"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.job_config import Compensation, Criterion, JobConfig, RecoverySpec
from jobs.settings import Settings
from jobs.states import JobStatus
from service.result_schemas import ResultsPublic
from tests.integration.conftest import free_port
from tests.worker.world import World
from worker.lease import JobCancelled
from worker.mlflow_tracking import STOP_GRACE_S, run_params, track_in_mlflow, tracking_env

pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")

MLFLOW = {"experiment": "pruning", "run_name": None}


def _with_tracking(world: World, uri: str | None, timeout: float = 300) -> None:
    world.settings = Settings(
        data_dir=world.root,
        batch_size=32,
        device="cpu",
        mlflow_tracking_uri=uri,
        mlflow_timeout_seconds=timeout,
    )


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _results_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"notes": ["from the engine"]}, indent=2))
    return folder


def _notes(folder: Path) -> list[str]:
    notes: list[str] = json.loads((folder / "results.json").read_text())["notes"]
    return notes


def test_a_job_whose_tracking_server_is_down_succeeds_with_a_note(
    world: World, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # reaches the child: no retries
    _with_tracking(world, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    job = world.run(world.job(world.model(model_file), world.npz(), mlflow=MLFLOW).id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    path = world.blobs.artifact_path(job.id, "results.json")
    assert path is not None
    results = json.loads(path.read_text())
    ResultsPublic.model_validate(results)
    (note,) = results["notes"]
    assert note.startswith("MLflow: the run was not created: ") and "Connection refused" in note
    assert "mlflow" not in results  # no run to name
    assert world.attempt_folders() == []


def test_a_stalled_tracking_server_is_cut_off_at_the_time_limit(
    world: World, stalled_server: str, tmp_path: Path
) -> None:
    _with_tracking(world, stalled_server, timeout=3)
    job = world.job("m" * 32, "d" * 32, mlflow=MLFLOW)
    folder = _results_folder(tmp_path)
    started = time.monotonic()
    track_in_mlflow(job, world.settings, folder)
    assert time.monotonic() - started < 3 + STOP_GRACE_S + 2
    assert _notes(folder) == [
        "from the engine",
        "MLflow: logging stopped after 3 s (DEADWEIGHT_MLFLOW_TIMEOUT_SECONDS); no run was created",
    ]
    assert [p.name for p in folder.iterdir()] == ["results.json"]  # no half-written file


def test_a_cancelled_job_stops_its_logging_at_once(
    world: World, stalled_server: str, tmp_path: Path
) -> None:
    _with_tracking(world, stalled_server)
    job = world.job("m" * 32, "d" * 32, mlflow=MLFLOW)
    started = time.monotonic()

    def cancelled() -> None:
        if time.monotonic() - started > 0.5:
            raise JobCancelled(job.id)

    with pytest.raises(JobCancelled):
        track_in_mlflow(job, world.settings, _results_folder(tmp_path), watches=(cancelled,))
    assert time.monotonic() - started < 0.5 + STOP_GRACE_S + 2


def test_a_worker_without_the_setting_says_so(world: World, tmp_path: Path) -> None:
    _with_tracking(world, None)
    folder = _results_folder(tmp_path)
    track_in_mlflow(world.job("m" * 32, "d" * 32, mlflow=MLFLOW), world.settings, folder)
    assert _notes(folder)[1] == (
        "MLflow: not logged: DEADWEIGHT_MLFLOW_TRACKING_URI is not set on the worker that ran "
        "this job"
    )
    plain = _results_folder(tmp_path / "plain")
    track_in_mlflow(world.job("m" * 32, "d" * 32), world.settings, plain)
    assert _notes(plain) == ["from the engine"]  # a job without mlflow: nothing to say


def test_the_job_s_configuration_becomes_the_run_s_parameters() -> None:
    config = JobConfig(
        Criterion.VARIANCE,
        compensate=Compensation.MEAN,
        recovery=RecoverySpec(epochs=2, max_seconds=None),
        max_metric_drop=0.01,
    )
    assert run_params(config) == {
        "criterion": "variance",
        "thresholds": "default",
        "compensate": "mean",
        "allocation": "global",
        "recovery.epochs": "2",
        "recovery.lr": "0.001",
        "recovery.max_seconds": "none",
        "recovery.batch_size": "32",
        "search": "false",
        "seed": "0",
        "metric": "none",
        "max_metric_drop": "0.01",
    }


def test_the_logging_child_gets_an_allowlist_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No setting, no database URL, no blob store credentials: MLflow's own variables, and
    what the operator names for it."""
    monkeypatch.setenv("DEADWEIGHT_DATABASE_URL", "postgresql://db-secret@db/x")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "blob-store-key")
    monkeypatch.setenv("SOME_OTHER_SECRET", "x")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-token")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("DEADWEIGHT_MLFLOW_ENV_AWS_ACCESS_KEY_ID", "artifact-store-key")
    env = tracking_env("http://mlflow:5000", "/tmp/scratch")
    assert env["MLFLOW_TRACKING_TOKEN"] == "mlflow-token"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["AWS_ACCESS_KEY_ID"] == "artifact-store-key"  # named for it, not the worker's
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == env["AWS_CONFIG_FILE"] == "/dev/null"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert not [name for name in env if name.startswith("DEADWEIGHT_")]
    assert "SOME_OTHER_SECRET" not in env
    assert "db-secret" not in json.dumps(env)
