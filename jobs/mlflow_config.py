"""A job's MLflow tracking: what a job may ask for, where the tracking server is, and the run
it made as `results.json` reports it (the README's MLflow section).

Checked twice: when a job is submitted (`service.mlflow_checks`: the API's settings must name
a tracking server, or a 422) and by the worker that ran the job (`worker.mlflow_tracking`),
which logs only where its own settings name one. A leaf module: the settings import it to
check themselves at start, the API without MLflow installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

TRACKING_URI_SETTING: Final = "DEADWEIGHT_MLFLOW_TRACKING_URI"
TIMEOUT_SETTING: Final = "DEADWEIGHT_MLFLOW_TIMEOUT_SECONDS"
# MLflow's SQL stores keep an experiment's name in 256 characters and a run's in 250.
MAX_EXPERIMENT_LENGTH: Final = 256
MAX_RUN_NAME_LENGTH: Final = 250
# http(s): a tracking server; databricks (or databricks://<profile>): a Databricks workspace.
# Others MLflow knows (a local folder, a database) would be on one worker's machine only.
_TRACKING_SCHEMES: Final = ("http", "https", "databricks")
# The key of the run's block in results.json, and of the job's request in its stored config.
RESULTS_KEY: Final = "mlflow"
# Every note the worker adds to results.json about its MLflow run starts with this.
NOTE_PREFIX: Final = "MLflow: "


def check_name(value: str, field: str, max_length: int) -> str:
    """An experiment or run name MLflow stores as given: 1 to `max_length` printable
    characters, not starting or ending with a space.

    Raises:
        ValueError: naming `field` and what to change.
    """
    if not value or len(value) > max_length:
        raise ValueError(f"{field} must be 1 to {max_length} characters")
    if not value.isprintable() or value != value.strip():
        raise ValueError(
            f"{field} must be printable characters (no tabs, newlines or control characters) "
            "without leading or trailing spaces"
        )
    return value


@dataclass(frozen=True)
class MlflowSpec:
    """A job's MLflow request as its row stores it, under the key `mlflow` of its config."""

    experiment: str
    run_name: str | None = None  # None: `deadweight-<job id>`

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "run_name": self.run_name}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MlflowSpec | None:
        """The request stored in a job's config; None for jobs without one (and every job
        stored before MLflow tracking existed)."""
        raw = config.get(RESULTS_KEY)
        if not isinstance(raw, Mapping) or not isinstance(raw.get("experiment"), str):
            return None
        run_name = raw.get("run_name")
        return cls(raw["experiment"], run_name if isinstance(run_name, str) else None)

    def run_name_for(self, job_id: str) -> str:
        return self.run_name or f"deadweight-{job_id}"


@dataclass(frozen=True)
class MlflowRun:
    """The run a job logged, as `results.json` names it under `mlflow`."""

    run_id: str
    experiment_id: str
    run_url: str | None  # the run's page in the tracking server's UI (http(s) servers only)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id, "run_url": self.run_url}


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI of an http(s) tracking server; None for others."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return None
    base = tracking_uri.rstrip("/")
    return f"{base}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"


def tracking_uri_problems(uri: str | None) -> list[str]:
    """What is wrong with the tracking URI setting, for the settings' start-up check."""
    if not uri or uri == "databricks":  # unset or empty; the default ~/.databrickscfg profile
        return []
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return [f"{TRACKING_URI_SETTING} is not a valid URI: {exc}"]
    if parts.scheme not in _TRACKING_SCHEMES or (
        parts.scheme != "databricks" and not parts.hostname
    ):
        return [
            f"{TRACKING_URI_SETTING} must be an http(s):// URL of a tracking server or "
            f"databricks[://profile], got scheme {parts.scheme or 'none'!r}"
        ]
    if parts.query or parts.fragment:
        # A token in a query string would reach logs and results' `run_url`.
        return [
            f"{TRACKING_URI_SETTING} must not have a query or fragment: give credentials as "
            "MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
        ]
    if parts.username is not None or parts.password is not None:
        # A URL's credentials would reach logs and results; MLflow reads its own variables.
        return [
            f"{TRACKING_URI_SETTING} must not carry credentials: set MLFLOW_TRACKING_TOKEN, or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, in the workers' environment"
        ]
    return []
