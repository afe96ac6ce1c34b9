"""The MLflow logging child: `python -m worker.mlflow_run`, started by the worker after a job's
engine succeeded and before its results are published (`worker.mlflow_tracking`).

It reads one `TrackingRequest` on stdin and logs the job as one run: the job's parameters;
per candidate (step = its index) its metric, metric drop, parameters, bytes, MACs and size
reduction, and the baseline's and the recommended candidate's figures; the plots,
results.csv, report.html, the recommended model (under `model/`) and, last, results.json,
amended first with the run's IDs and a note for everything that failed, so that the copy in
MLflow is the file the job publishes. Each step that fails becomes a note and the others go
on; the run ends FINISHED, or FAILED when something is missing from it.

A child of its own, rather than the worker's process: a stalled MLflow call cannot be
interrupted from another thread, a process can be stopped at the time limit; and MLflow's
imports and its HTTP settings stay out of the long-lived worker. SIGTERM (the worker's time
limit) ends the run KILLED, if the server still answers.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from jobs.job_config import REPORT_HTML, RESULTS_CSV, RESULTS_JSON
from jobs.mlflow_config import NOTE_PREFIX, MlflowRun, run_url
from worker.mlflow_protocol import (
    RunCreated,
    TrackingDone,
    TrackingRequest,
    decode_tracking_request,
    encode_tracking,
)
from worker.results_amend import amend_results, staged_results

# A candidate's figures logged as `candidate.<key>` (step = index), and the same of the
# recommended one as `recommended.<key>`; the baseline's as `baseline.<key>`. A figure that
# is null is skipped, except the metric itself, logged as NaN (an `mse` that overflowed);
# `latency_ms` becomes `latency_1_median_ms`, `latency_1_p90_ms`, `latency_batch_*_ms`.
CANDIDATE_METRICS = (
    "metric",
    "metric_drop",
    "parameters",
    "bytes",
    "macs",
    "size_reduction",
    "metric_before_recovery",
    "latency_ms",
)
BASELINE_METRICS = ("metric", "parameters", "bytes", "macs", "latency_ms")
_ALWAYS = ("metric", "metric_drop")
MODEL_FOLDER = "model"  # the recommended model's folder among the run's artifacts
# MLflow's limits: a batch's metrics, a parameter's value.
_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000
_NOTE_DETAIL = 300  # characters of an error kept in a note


class Stopped(BaseException):
    """SIGTERM: the worker's time limit for logging struck."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped


def brief(exc: BaseException) -> str:
    """An error for a note: one line, its start and its end (where requests' messages say
    what happened, e.g. `Connection refused`)."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split()) or type(exc).__name__
    if len(text) <= _NOTE_DETAIL:
        return text
    half = _NOTE_DETAIL // 2
    return f"{text[:half]} ... {text[-half:]}"


def _latency_figures(latency: Any) -> dict[str, float]:
    """A `latency_ms` entry as flat figures, named as results.csv's columns
    (`latency_1_median_ms`, ...); none for a job that measured no latency."""
    figures: dict[str, float] = {}
    if not isinstance(latency, dict):
        return figures
    for size, label in (("batch_1", "1"), ("batch", "batch")):
        timing = latency.get(size)
        if isinstance(timing, dict):
            for stat in ("median", "p90"):
                if isinstance(timing.get(stat), int | float):
                    figures[f"latency_{label}_{stat}_ms"] = float(timing[stat])
    return figures


def _metric_points(results: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(key, value, step) of every figure to log."""
    points: list[tuple[str, float, int]] = []

    def add(prefix: str, source: dict[str, Any], keys: tuple[str, ...], step: int) -> None:
        for key in keys:
            if key not in source:
                continue
            value = source[key]
            if key == "latency_ms":  # {"batch_1": {"median", "p90"}, "batch": {...}}, or null
                for name, ms in _latency_figures(value).items():
                    points.append((f"{prefix}.{name}", ms, step))
                continue
            if value is None and key not in _ALWAYS:
                continue
            points.append((f"{prefix}.{key}", math.nan if value is None else float(value), step))

    add("baseline", results.get("baseline") or {}, BASELINE_METRICS, 0)
    candidates = results.get("candidates") or []
    for candidate in candidates:
        add("candidate", candidate, CANDIDATE_METRICS, int(candidate["index"]))
    recommended = results.get("recommended")
    if recommended is not None:
        chosen = candidates[recommended]
        add("recommended", chosen, CANDIDATE_METRICS, 0)
        points.append(("recommended.index", float(recommended), 0))
    return points


class RunLogger:
    """One run's steps; each returns the notes of what failed (empty: all logged)."""

    def __init__(self, client: Any, run: MlflowRun, folder: Path) -> None:
        self.client, self.run, self.folder = client, run, folder

    def _step(self, what: str, action: Any) -> list[str]:
        try:
            action()
        except Exception as exc:
            return [f"{NOTE_PREFIX}{what} not logged to run {self.run.run_id}: {brief(exc)}"]
        return []

    def log_figures(self, params: dict[str, str]) -> list[str]:
        from mlflow.entities import Metric, Param

        results = staged_results(self.folder)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in _metric_points(results)]
        values = [Param(k, v[:_MAX_PARAM_LENGTH]) for k, v in params.items()]
        problems = self._step(
            "parameters", lambda: self.client.log_batch(self.run.run_id, params=values)
        )
        for start in range(0, len(metrics), _METRICS_PER_BATCH):
            chunk = metrics[start : start + _METRICS_PER_BATCH]
            problems += self._step(
                "metrics", lambda chunk=chunk: self.client.log_batch(self.run.run_id, metrics=chunk)
            )
        return problems[:2]  # a server that is down fails every batch alike

    def log_files(self) -> list[str]:
        results = staged_results(self.folder)
        files: list[tuple[Path, str | None]] = [
            (p, None) for p in sorted(self.folder.glob("*.png"))
        ]
        files.append((self.folder / RESULTS_CSV, None))
        if (self.folder / REPORT_HTML).is_file():  # the engine writes it; older ones did not
            files.append((self.folder / REPORT_HTML, None))
        recommended = results.get("recommended")
        if recommended is not None:
            files.append(
                (self.folder / results["candidates"][recommended]["artifact"], MODEL_FOLDER)
            )
        problems: list[str] = []
        for path, under in files:
            problems += self._step(
                path.name,
                lambda path=path, under=under: self.client.log_artifact(
                    self.run.run_id, str(path), under
                ),
            )
        return problems

    def log_results(self, problems: list[str]) -> list[str]:
        """results.json, with the run and every note so far, as the job will publish it."""
        amend_results(self.folder, problems, self.run)
        path = self.folder / RESULTS_JSON
        failed = self._step(
            RESULTS_JSON, lambda: self.client.log_artifact(self.run.run_id, str(path))
        )
        amend_results(self.folder, failed)  # the copy in MLflow lacks this note: it has none
        return failed

    def finish(self, status: str) -> list[str]:
        failed = self._step(
            f"the run's status ({status})",
            lambda: self.client.set_terminated(self.run.run_id, status),
        )
        amend_results(self.folder, failed)
        return failed


def _experiment_id(client: Any, name: str) -> str:
    """The experiment's ID, created when it does not exist (another job may create it first).

    Raises:
        ValueError: the experiment was deleted (MLflow keeps its name until it is purged).
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        found = client.get_experiment_by_name(name)
        if found is None:
            raise ValueError(f"experiment {name!r} was created and is gone")
    if found.lifecycle_stage == "deleted":
        raise ValueError(
            f"experiment {name!r} is deleted on the tracking server: restore it "
            "(mlflow experiments restore) or name another"
        )
    return str(found.experiment_id)


def _start_run(request: TrackingRequest) -> tuple[Any, MlflowRun]:
    """The client and the run it created in the request's experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=request.tracking_uri)
    experiment_id = _experiment_id(client, request.experiment)
    created = client.create_run(experiment_id, tags=request.tags, run_name=request.run_name)
    run_id = created.info.run_id
    return client, MlflowRun(
        run_id, experiment_id, run_url(request.tracking_uri, experiment_id, run_id)
    )


def track(request_text: bytes, out: IO[str]) -> int:
    """Log the request's run; the exit status (0: `TrackingDone` was sent)."""
    request = decode_tracking_request(request_text)
    folder = Path(request.folder)

    def send(message: RunCreated | TrackingDone) -> None:
        out.write(encode_tracking(message) + "\n")
        out.flush()

    try:
        client, run = _start_run(request)
    except Exception as exc:  # the server is down, refuses the experiment, MLflow is missing
        notes = [f"{NOTE_PREFIX}the run was not created: {brief(exc)}"]
        amend_results(folder, notes)
        send(TrackingDone(problems=notes))
        return 0
    send(RunCreated(run_id=run.run_id, experiment_id=run.experiment_id, run_url=run.run_url))
    logger = RunLogger(client, run, folder)
    try:
        problems = logger.log_figures(request.params) + logger.log_files()
        problems += logger.log_results(problems)
        problems += logger.finish("FAILED" if problems else "FINISHED")
    except Stopped:
        # The worker notes the stop in results.json once this process has ended.
        logger.finish("KILLED")
        return 1
    send(TrackingDone(problems=problems))
    return 0


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    # The protocol gets the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return track(sys.stdin.buffer.read(), out)
    except Stopped:
        return 1  # before the run existed, or while it was being ended


if __name__ == "__main__":
    sys.exit(main())
