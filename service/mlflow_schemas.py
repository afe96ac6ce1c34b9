"""A job's MLflow tracking as a request gives it (see the README's MLflow section)."""

from __future__ import annotations

from pydantic import Field, field_validator

from jobs.mlflow_config import MAX_EXPERIMENT_LENGTH, MAX_RUN_NAME_LENGTH, MlflowSpec, check_name
from service.schemas import InputSchema


class MlflowIn(InputSchema):
    """Log the job as one run of an MLflow experiment on DEADWEIGHT_MLFLOW_TRACKING_URI."""

    experiment: str = Field(
        description=f"the experiment's name (1 to {MAX_EXPERIMENT_LENGTH} printable "
        "characters); created when it does not exist",
        examples=["pruning/resnet18"],
    )
    run_name: str | None = Field(
        None,
        description=f"the run's name (1 to {MAX_RUN_NAME_LENGTH} printable characters); "
        "omitted: deadweight-<job id>",
    )

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str) -> str:
        return check_name(value, "experiment", MAX_EXPERIMENT_LENGTH)

    @field_validator("run_name")
    @classmethod
    def _run_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "run_name", MAX_RUN_NAME_LENGTH)

    def spec(self) -> MlflowSpec:
        return MlflowSpec(self.experiment, self.run_name)
