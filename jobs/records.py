"""Plain, immutable records handed out by the job store (never ORM objects)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from jobs.job_config import JobConfig
from jobs.states import JobStatus, ModelStatus


@dataclass(frozen=True)
class ModelRecord:
    id: str
    tenant: str
    sha256: str
    bytes: int
    filename: str
    status: ModelStatus
    created_at: datetime
    # Filled by the worker's inspection: {"parameters", "inputs", "layers", "frozen"}.
    info: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    tenant: str
    sha256: str
    bytes: int
    filename: str
    format: str  # "npz" | "safetensors" | "csv"
    samples: int
    x_shape: list[int]  # per-sample shape, without the batch dimension
    has_labels: bool
    created_at: datetime
    label_column: str | None = None


@dataclass(frozen=True)
class JobRecord:
    id: str
    tenant: str
    model_id: str
    dataset_id: str
    eval_dataset_id: str | None
    # `JobConfig.to_json()` as stored, shown as is by the API (rows of earlier releases lack
    # later fields); `job_config()` reads it.
    config: dict[str, Any]
    status: JobStatus
    created_at: datetime
    stage: str = "queued"
    fraction: float = 0.0
    error: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_columns(cls, values: Mapping[str, Any]) -> JobRecord:
        """A record from a row of the jobs table's columns named as its fields
        (`JOB_RECORD_FIELDS`): the read path selects just those, without the ORM."""
        return cls(**{**values, "status": JobStatus(values["status"])})

    def job_config(self) -> JobConfig:
        """The stored configuration, read as this release runs it (`JobConfig.from_json`)."""
        return JobConfig.from_json(self.config)


# The jobs table's columns a `JobRecord` holds: each field is named after its column.
JOB_RECORD_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(JobRecord))
