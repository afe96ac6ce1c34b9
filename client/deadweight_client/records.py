"""The service's JSON records, typed. Each is the body the HTTP API returns, unchanged: keys
the server adds later are kept (a `TypedDict` is a plain dict)."""

from __future__ import annotations

from typing import Any, TypedDict


class ModelRecord(TypedDict, total=False):
    """`GET /v1/models/{id}`: `status` is pending, ready or invalid; once inspected,
    `parameters`, `inputs`, `layers`, `frozen` (or `error`)."""

    id: str
    sha256: str
    bytes: int
    status: str
    filename: str
    parameters: int
    inputs: list[Any]
    layers: list[dict[str, Any]]
    frozen: list[dict[str, Any]]
    error: str | None


class DatasetRecord(TypedDict, total=False):
    """`GET /v1/datasets/{id}`."""

    id: str
    sha256: str
    bytes: int
    format: str
    samples: int
    x_shape: list[int]
    has_labels: bool


class Progress(TypedDict):
    stage: str
    fraction: float


class JobRecord(TypedDict, total=False):
    """`GET /v1/jobs/{id}`: `status` is queued, running, succeeded, failed or cancelled."""

    id: str
    status: str
    progress: Progress
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_id: str
    dataset_id: str
    eval_dataset_id: str | None
    config: dict[str, Any]
    attempts: int
    cancel_requested: bool


class Artifact(TypedDict):
    """One file a job published (`GET /v1/jobs/{id}/artifacts`)."""

    name: str
    bytes: int
    media_type: str


# `GET /v1/jobs/{id}/results`: `baseline`, `candidates` (each with `artifact`), `pareto`,
# `recommended` (an index into `candidates`, or null) and the job's settings; see the
# service's README for every field.
Results = dict[str, Any]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
