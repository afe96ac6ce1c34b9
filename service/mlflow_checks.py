"""A submitted job's MLflow tracking, checked at the door: this server must name a tracking
server, or the job is a 422 that names the setting.

Whether the worker that runs the job has the MLflow client installed (`deadweight[mlflow]`)
cannot be known here: a worker without it still runs the job, and its results say in their
notes that nothing was logged (`worker.mlflow_tracking`).
"""

from __future__ import annotations

from typing import Any

from jobs.mlflow_config import RESULTS_KEY, TRACKING_URI_SETTING
from jobs.settings import Settings
from service.errors import InvalidJob
from service.mlflow_schemas import MlflowIn


def with_mlflow(
    config: dict[str, Any], mlflow: MlflowIn | None, settings: Settings
) -> dict[str, Any]:
    """The job's stored config, with its MLflow request under `mlflow` (if it has one).

    Raises:
        InvalidJob: (422, code `mlflow_not_configured`) this server names no tracking server.
    """
    if mlflow is None:
        return config
    if not settings.mlflow_tracking_uri:
        raise InvalidJob(
            f"MLflow tracking is off on this server: {TRACKING_URI_SETTING} is not set (an "
            "operator sets it to the tracking server's URL, e.g. http://mlflow.internal:5000); "
            "submit the job without mlflow",
            code="mlflow_not_configured",
        )
    return {**config, RESULTS_KEY: mlflow.spec().to_json()}
