"""Logging a job to MLflow, for jobs that ask (`"mlflow": {"experiment", "run_name"}`): after
its engine succeeded, before its result set is published (`worker.execute`).

The logging runs in a child process (`worker.mlflow_run`) that dies with the worker, with an
allowlist of the worker's environment (`tracking_env`) and the tracking server's URI. The
worker waits for it at most `DEADWEIGHT_MLFLOW_TIMEOUT_SECONDS` while the job's lease is
renewed as usual and its watches (lease, cancellation) are polled; past the limit the child
is stopped (SIGTERM, the run ends KILLED if the server still answers; SIGKILL after a
grace). MLflow's own HTTP retries would otherwise take minutes on each call: unless the
operator set them, the child gets at most 2 retries and 30 s per request.

Nothing MLflow does fails the job: a tracking server that is down, refuses the experiment or
loses a file is reported as a note in results.json (each starts with `MLflow: `), and the run
the job made, whatever it holds, is named under `mlflow` in results.json.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs.child_process import child_env, die_with_parent
from jobs.job_config import JobConfig
from jobs.mlflow_config import NOTE_PREFIX, TIMEOUT_SETTING, TRACKING_URI_SETTING, MlflowSpec
from jobs.records import JobRecord
from jobs.settings import Settings
from worker.mlflow_protocol import (
    RunCreated,
    TrackingDone,
    TrackingProtocolError,
    TrackingRequest,
    decode_tracking_message,
    encode_tracking,
)
from worker.results_amend import amend_results, remove_partial_writes

log = logging.getLogger("deadweight.worker")

WATCH_EVERY_S = 0.25
STOP_GRACE_S = 5.0  # after SIGTERM, for the child to end its run KILLED
# MLflow's defaults are 7 retries with backoff and 120 s per request.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@dataclass
class ChildOutcome:
    code: int | None
    timed_out: bool
    created: RunCreated | None = None
    done: TrackingDone | None = None
    stderr: str = ""


def track_in_mlflow(
    job: JobRecord,
    settings: Settings,
    folder: Path,
    watches: Sequence[Callable[[], None]] = (),
) -> None:
    """Log the result set in `folder` as an MLflow run when the job asked for one.

    Raises:
        Whatever a watch raises (`LeaseLost`, `JobCancelled`), once the child has stopped;
        never an error of MLflow's.
    """
    spec = MlflowSpec.from_config(job.config)
    if spec is None:
        return
    missing = _unavailable(settings)
    if missing:
        _note(folder, f"{NOTE_PREFIX}not logged: {missing}")
        return
    assert settings.mlflow_tracking_uri is not None  # checked by _unavailable
    request = TrackingRequest(
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=spec.experiment,
        run_name=spec.run_name_for(job.id),
        folder=str(folder),
        params=run_params(job.job_config()),
        tags=run_tags(job),
    )
    timeout = settings.mlflow_timeout_seconds
    outcome = run_tracking_child(request, timeout, watches)
    if outcome.done is not None:
        run = outcome.created.run_id if outcome.created else None
        log.info(
            "job %s: MLflow run %s logged; %d problem(s)", job.id, run, len(outcome.done.problems)
        )
        for problem in outcome.done.problems:
            log.warning("job %s: %s", job.id, problem)
        return
    log.warning(
        "job %s: the MLflow logging process ended without finishing (exit %s)%s",
        job.id,
        outcome.code,
        f"; its stderr ends:\n{outcome.stderr[-4000:]}" if outcome.stderr else "",
    )
    remove_partial_writes(folder)  # a write the child was stopped in
    if outcome.timed_out:
        why = f"logging stopped after {timeout:g} s ({TIMEOUT_SETTING})"
    else:
        why = f"logging ended early (exit status {outcome.code}; the worker's log says why)"
    created = outcome.created
    what = (
        f"; run {created.run_id} may lack some of the job's figures or files"
        if created
        else "; no run was created"
    )
    _note(folder, NOTE_PREFIX + why + what, created)


def _unavailable(settings: Settings) -> str | None:
    """Why this worker cannot log at all, or None."""
    if not settings.mlflow_tracking_uri:
        return f"{TRACKING_URI_SETTING} is not set on the worker that ran this job"
    if importlib.util.find_spec("mlflow") is None:
        return (
            "the worker that ran this job has no MLflow client (pip install 'deadweight[mlflow]')"
        )
    return None


def _note(folder: Path, note: str, created: RunCreated | None = None) -> None:
    try:
        amend_results(folder, [note], created.run() if created else None)
    except (OSError, ValueError) as exc:
        # The result set itself is unreadable: publishing it will say so, not this.
        log.warning("results.json could not take the note %r: %s", note, exc)


def run_params(config: JobConfig) -> dict[str, str]:
    """The job's configuration as MLflow parameters (strings); recovery's fields flattened."""
    params: dict[str, str] = {}
    for key, value in config.to_json().items():
        if key == "recovery" and isinstance(value, dict):
            params.update({f"recovery.{k}": _text(v) for k, v in value.items()})
        elif key == "thresholds" and value is None:
            params[key] = "default"  # the engine's sweep of fractions, or the search's probes
        else:
            params[key] = _text(value)
    return params


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def run_tags(job: JobRecord) -> dict[str, str]:
    tags = {
        "mlflow.source.name": "deadweight",
        "mlflow.source.type": "JOB",
        "deadweight.job_id": job.id,
        "deadweight.attempt": str(job.attempts),
        "deadweight.tenant": job.tenant,
        "deadweight.model_id": job.model_id,
        "deadweight.dataset_id": job.dataset_id,
    }
    if job.eval_dataset_id:
        tags["deadweight.eval_dataset_id"] = job.eval_dataset_id
    return tags


# What the logging child is given of the worker's environment: Python's own needs, MLflow's
# and Databricks' variables (credentials among them), proxies and certificate bundles. Not
# the rest: the worker's AWS_* variables may be the blob store's credentials, with which a
# tenant's experiment whose artifact location names that bucket could write into other
# jobs' keys. Other variables are given by the operator explicitly, as
# DEADWEIGHT_MLFLOW_ENV_<NAME> (e.g. an artifact store's AWS_ACCESS_KEY_ID).
_PASSED_PREFIXES = ("MLFLOW_", "DATABRICKS_")
_PASSED = (
    "HOME",  # ~/.databrickscfg and ~/.netrc
    "TZ",
    *(f"{name}_PROXY" for name in ("HTTP", "HTTPS", "NO", "ALL")),
    *(f"{name}_proxy" for name in ("http", "https", "no", "all")),
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
EXPLICIT_ENV_PREFIX = "DEADWEIGHT_MLFLOW_ENV_"


def tracking_env(tracking_uri: str, scratch: str) -> dict[str, str]:
    """The child's environment (an allowlist: no `DEADWEIGHT_*` setting, no database or
    broker URL, no blob store credentials), MLflow's HTTP limits unless the operator set
    them, and the tracking URI (MLflow resolves proxied artifact locations against it)."""
    names = [*_PASSED, *(k for k in os.environ if k.startswith(_PASSED_PREFIXES))]
    env = child_env(names)
    # boto3 in the child reads no shared AWS files either (they may hold the same keys).
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    for name, value in os.environ.items():
        if name.startswith(EXPLICIT_ENV_PREFIX) and len(name) > len(EXPLICIT_ENV_PREFIX):
            env[name.removeprefix(EXPLICIT_ENV_PREFIX)] = value
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        env.setdefault(name, value)
    env.update(MLFLOW_TRACKING_URI=tracking_uri, TMPDIR=scratch)
    return env


def run_tracking_child(
    request: TrackingRequest, timeout: float, watches: Sequence[Callable[[], None]] = ()
) -> ChildOutcome:
    """Run `python -m worker.mlflow_run` on `request`, for at most `timeout` seconds."""
    with tempfile.TemporaryDirectory(prefix="deadweight-mlflow-") as scratch:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.mlflow_run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=scratch,
            env=tracking_env(request.tracking_uri, scratch),
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        pending: bytes | None = encode_tracking(request).encode()
        timed_out = False
        try:
            while True:
                try:
                    out, err = proc.communicate(pending, timeout=WATCH_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    pending = None  # written on, by communicate, from the first call's input
                for watch in watches:
                    watch()
                if time.monotonic() >= deadline:
                    timed_out = True
                    out, err = _stop(proc)
                    break
        finally:
            if proc.poll() is None:  # a watch raised, or the worker's own time limit struck
                _stop(proc)
    return _outcome(proc.returncode, timed_out, out, err)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    proc.terminate()
    try:
        return proc.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def _outcome(code: int | None, timed_out: bool, out: bytes, err: bytes) -> ChildOutcome:
    outcome = ChildOutcome(code, timed_out, stderr=err.decode(errors="replace"))
    for line in out.decode(errors="replace").splitlines():
        try:
            message = decode_tracking_message(line)
        except TrackingProtocolError:
            log.warning("the MLflow logging process wrote an unreadable line: %.200s", line)
            continue
        if isinstance(message, RunCreated):
            outcome.created = message
        else:
            outcome.done = message
    return outcome
