"""A job against real stores (SQLite, files): its outcomes and how they are published."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import update

from jobs.manifest import is_complete, write_manifest
from jobs.states import JobStatus
from jobs.tables import JobRow, utcnow
from tests.log_capture import captured_json_log
from tests.worker.world import TENANT, World


def pushed_metrics(world: World) -> dict[tuple[object, ...], float]:
    """The series the worker pushed for /metrics: (name, *sorted label pairs) -> value."""
    series = world.store.metrics.series()
    return {(name, *sorted(labels.items())): value for name, labels, value in series}


def test_a_job_runs_to_success_and_publishes_its_files(world: World, model_file: Path) -> None:
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.stage == "done" and job.fraction == 1.0
    names = {a.name for a in world.blobs.list_artifacts(job.id)}
    assert {
        "results.json",
        "stats.json",
        "pruned-0.pt2",
        "pruned-1.pt2",
        "tradeoff.png",
        "report.html",
    } <= names
    leftovers = [p.name for p in world.blobs.jobs_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staging folder was renamed into place
    pushed = pushed_metrics(world)
    assert pushed["deadweight_jobs_finished_total", ("state", "succeeded"), ("tenant", TENANT)] == 1
    assert pushed["deadweight_candidates_evaluated_total",] == 2
    assert pushed["deadweight_job_duration_seconds_bucket", ("le", "+Inf"), ("state", "succeeded")]
    stages = {key[1][1] for key in pushed if key[0] == "deadweight_job_stage_duration_seconds_sum"}
    assert {"statistics", "candidates"} <= stages


def test_a_search_job_with_recovery_runs_in_the_sandbox(world: World, model_file: Path) -> None:
    config = {
        "criterion": "reconstruction",
        "thresholds": None,
        "compensate": "linear",
        "allocation": "uniform",
        "recovery": {"epochs": 1, "lr": 0.001, "max_seconds": 60, "batch_size": 32},
        "search": True,
        "seed": 5,
        "max_metric_drop": 0.05,
    }
    job = world.run(world.job(world.model(model_file), world.npz(), **config).id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    path = world.blobs.artifact_path(job.id, "results.json")
    assert path is not None
    results = json.loads(path.read_text())
    assert results["search"] is True and len(results["candidates"]) == 6
    assert (results["compensate"], results["allocation"]) == ("linear", "uniform")
    assert results["data"]["holdout"] == {
        "fraction": 0.2,
        "seed": 5,
        "samples": 40,
        "rule": "numpy.random.default_rng(seed).permutation(samples)[:held] are held out",
    }
    for candidate in results["candidates"]:
        if candidate["same_as"] is None:
            assert candidate["recovery"]["steps"] == 5  # 160 rows in batches of 32
            assert candidate["metric_before_recovery"] is not None


def test_a_second_delivery_does_nothing(world: World, model_file: Path) -> None:
    job = world.run(world.job(world.model(model_file), world.npz()).id)
    before = (world.blobs.job_dir(job.id) / "results.json").read_bytes()
    again = world.run(job.id)
    assert again.status is JobStatus.SUCCEEDED and again.attempts == 1
    assert (world.blobs.job_dir(job.id) / "results.json").read_bytes() == before


def test_a_bad_model_fails_with_a_reason(world: World, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip at all")
    with captured_json_log() as log:
        job = world.run(world.job(world.model(junk), world.npz()).id)
    assert job.status is JobStatus.FAILED
    # The job's real outcome in the log, with its fields (Celery's line would say "succeeded").
    ended = [json.loads(line) for line in log.getvalue().splitlines() if " failed: " in line]
    assert [(e["level"], e["job_id"], e["tenant"], e["attempt"]) for e in ended] == [
        ("WARNING", job.id, TENANT, 1)
    ]
    assert job.error is not None and "torch.export.save" in job.error
    assert world.blobs.list_artifacts(job.id) == []
    pushed = pushed_metrics(world)
    assert pushed["deadweight_jobs_finished_total", ("state", "failed"), ("tenant", TENANT)] == 1
    assert ("deadweight_candidates_evaluated_total",) not in pushed


def test_accuracy_without_labels_fails_with_a_reason(world: World, model_file: Path) -> None:
    job = world.run(world.job(world.model(model_file), world.npz(labels=False)).id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "needs labels" in job.error


def test_a_csv_dataset_with_a_label_column(world: World, model_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["a,b,c,d,e,label"] + [
        ",".join(f"{v:.4f}" for v in rng.normal(size=5)) + f",{rng.integers(0, 3)}"
        for _ in range(60)
    ]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    sha, size = world.blobs.put_file(path)
    data = world.store.datasets.add(TENANT, sha, size, "d.csv", "csv", 60, [5], True, "label")
    job = world.run(world.job(world.model(model_file), data.id).id)
    assert job.status is JobStatus.SUCCEEDED, job.error


def test_a_published_result_set_is_the_outcome_of_the_next_attempt(
    world: World, model_file: Path
) -> None:
    # Attempt 1 published its folder, then its worker died before recording success.
    model_id = world.model(model_file)
    job = world.run(world.job(model_id, world.npz()).id)
    results = world.blobs.job_dir(job.id) / "results.json"
    written = results.stat().st_mtime_ns
    with world.store.database.session() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id == job.id)
            .values(status="running", lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert world.store.reaping.reap_expired(max_attempts=3).requeued == [job.id]
    model = world.store.models.get(TENANT, model_id)
    assert model is not None
    world.blobs.delete(model.sha256)  # a second run of the engine would fail without it
    again = world.run(job.id)
    assert again.status is JobStatus.SUCCEEDED and again.error is None, again.error
    assert again.attempts == 2 and results.stat().st_mtime_ns == written  # not re-run
    assert world.attempt_folders() == []


def test_an_incomplete_published_folder_is_not_an_outcome(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    assert write_manifest(folder) == 2 and is_complete(folder)
    (folder / "pruned-0.pt2").write_bytes(b"extra")  # not in the manifest
    assert not is_complete(folder)
    (folder / "pruned-0.pt2").unlink()
    (folder / "results.json").write_text("{ }")  # another size
    assert not is_complete(folder)
