"""Plain, immutable records handed out by the job store (never ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    # The validated request body (criterion, thresholds, compensate, metric, ...), as JSON data.
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
