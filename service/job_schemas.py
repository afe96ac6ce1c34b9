"""Request and response bodies of the job routes (see CONTRACT.md; names and shapes are public).

The vocabulary (criteria, compensations, allocations, metrics) and its defaults are the job's,
from `jobs.job_config`; a `JobCreate` that passes these checks becomes a `JobConfig` in
`service.submission`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from jobs.blobs import ArtifactInfo
from jobs.job_config import (
    DEFAULT_ALLOCATION,
    DEFAULT_COMPENSATION,
    DEFAULT_MAX_METRIC_DROP,
    MAX_RECOVERY_EPOCHS,
    Allocation,
    Compensation,
    Criterion,
    Format,
    Metric,
    RecoverySpec,
    criterion_for,
)
from jobs.records import JobRecord
from jobs.states import JobStatus
from service.mlflow_schemas import MlflowIn
from service.openapi_examples import JOB_CREATE_EXAMPLES
from service.schemas import InputSchema, Schema, utc, utc_or_none
from service.threshold_schema import ThresholdIn
from service.webhook_schemas import WebhookIn

_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


def _compensation_from_bool(value: object) -> object:
    # The first API took a boolean (pydantic's lax one: 1, "yes", "off" too): true folded
    # the means, false did nothing.
    if isinstance(value, bool) or value in (0, 1):
        return Compensation.MEAN if value else Compensation.NONE
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return Compensation.MEAN if value.lower() in _TRUE else Compensation.NONE
    return value


CompensateIn = Annotated[
    Compensation,
    BeforeValidator(_compensation_from_bool),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": [c.value for c in Compensation], "type": "string"},
                {"type": "boolean"},
            ]
        }
    ),
]


MAX_THRESHOLDS_IN_A_BODY = 4096


class RecoveryIn(InputSchema):
    """Fine-tuning of each candidate after the cut, on the calibration data."""

    epochs: int = Field(
        RecoverySpec.epochs,
        ge=0,
        le=MAX_RECOVERY_EPOCHS,
        description="0: re-estimate BatchNorm statistics only",
    )
    lr: float = Field(
        RecoverySpec.lr, gt=0, le=1, description="Adam's learning rate (cosine decay)"
    )
    max_seconds: float | None = Field(
        None, gt=0, le=604800, description="per candidate; training stops early past it"
    )
    batch_size: int = Field(
        RecoverySpec.batch_size, ge=1, le=65536, description="training batch size"
    )

    def spec(self) -> RecoverySpec:
        return RecoverySpec(self.epochs, self.lr, self.max_seconds, self.batch_size)


class JobCreate(InputSchema):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        protected_namespaces=(),
        json_schema_extra={"examples": [e["value"] for e in JOB_CREATE_EXAMPLES.values()]},
    )

    model_id: str = Field(min_length=1, max_length=64)
    dataset_id: str = Field(min_length=1, max_length=64)
    eval_dataset_id: str | None = Field(
        None,
        max_length=64,
        description="evaluation data; default: the calibration dataset (with recovery, a "
        "seeded held-out part of it)",
    )
    criterion: Criterion | None = Field(
        None,
        description="reconstruction (fractions only): the error a removal leaves in the next "
        "layer after linear compensation; seed, variance: activation statistics. Omitted: "
        "reconstruction, or the criterion absolute thresholds are written for (seed for "
        "mean and std, variance for std alone)",
    )
    thresholds: list[ThresholdIn] | None = Field(
        None,
        min_length=1,
        # A hard cap in the schema (the server's own, DEADWEIGHT_MAX_THRESHOLDS, is checked
        # later): validation then stops at the first item past it instead of producing an
        # error for each of half a million bad items.
        max_length=MAX_THRESHOLDS_IN_A_BODY,
        description="omitted: the engine's default sweep of fractions (or the search's probes)",
    )
    compensate: CompensateIn = Field(
        DEFAULT_COMPENSATION,
        description="what replaces removed neurons in the next layer: none, mean (their means "
        "folded into its bias) or linear (their least-squares reconstruction from the kept "
        "neurons); true/false mean mean/none",
    )
    allocation: Allocation = Field(
        DEFAULT_ALLOCATION,
        description="how a fraction is spread: global (one ranking across layers), uniform "
        "(the same share of every layer), or auto (with search only: a search with each, "
        "12 evaluations, and the evaluation chooses)",
    )
    recovery: RecoveryIn | None = Field(
        None, description="fine-tune every candidate after the cut; null: no retraining"
    )
    search: bool = Field(
        False,
        description="find the largest fraction within max_metric_drop by bisection (6 "
        "evaluations); thresholds must then be omitted",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="hold-out split and recovery's seed")
    metric: Metric | None = Field(
        None, description="omitted: accuracy when the evaluation data has labels, else agreement"
    )
    max_metric_drop: float = Field(DEFAULT_MAX_METRIC_DROP, ge=0)
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        description="a second budget for the recommendation: the smallest candidate within "
        "max_metric_drop whose measured batch-1 median latency (ms, on the worker's device) is "
        "at most this; null: none",
    )
    formats: list[Format] = Field(
        default_factory=lambda: [Format.PT2],
        min_length=1,
        max_length=len(Format),
        description='files per candidate: "pt2" always (its numbers are measured on it); '
        'with "onnx", also pruned-<k>.onnx (dynamic batch where the model\'s is), checked with '
        "onnx.checker and against the .pt2 with ONNX Runtime, and baseline.onnx of the original, "
        "checked the same way; a model that does not convert gets a note instead",
    )
    webhook: WebhookIn | None = Field(
        None, description="signed events when the job ends (and, if asked, when it starts)"
    )
    mlflow: MlflowIn | None = Field(
        None,
        description="log the job as an MLflow run (parameters, metrics per candidate, plots, "
        "results.json, the recommended model); needs DEADWEIGHT_MLFLOW_TRACKING_URI",
    )

    @property
    def resolved_criterion(self) -> Criterion:
        """`criterion`, or the one the thresholds are written for (`criterion_for`)."""
        return self.criterion or criterion_for(self.thresholds)

    @model_validator(mode="after")
    def _search_or_thresholds(self) -> Self:
        if self.search and self.thresholds is not None:
            raise ValueError(
                "search finds the fraction itself: omit thresholds, or set search to false"
            )
        if self.allocation is Allocation.AUTO and not self.search:
            raise ValueError(
                'allocation "auto" searches with both allocations: set search to true, or '
                'choose "global" or "uniform" for a sweep'
            )
        if self.resolved_criterion is Criterion.RECONSTRUCTION:
            for i, t in enumerate(self.thresholds or []):
                if t.fraction is None:
                    raise ValueError(
                        f'item {i} is absolute: criterion "reconstruction" takes '
                        '{"fraction"} thresholds (absolute ones are for "seed" and "variance")'
                    )
        return self

    @field_validator("thresholds")
    @classmethod
    def _thresholds_fit_criterion(
        cls, thresholds: list[ThresholdIn] | None, info: ValidationInfo
    ) -> list[ThresholdIn] | None:
        # `criterion` is declared first, so it is validated (or missing) by now.
        if (info.data.get("criterion") or criterion_for(thresholds)) is Criterion.SEED:
            for i, t in enumerate(thresholds or []):
                if t.fraction is None and t.mean is None:
                    raise ValueError(
                        f'item {i} has no "mean": criterion "seed" needs "mean" and "std" '
                        '(or use "fraction", or criterion "variance" for "std" alone)'
                    )
        return thresholds

    @field_validator("formats")
    @classmethod
    def _formats_include_pt2(cls, formats: list[Format]) -> list[Format]:
        return list(Format.parse_all(formats))


class ProgressPublic(Schema):
    stage: str
    fraction: float


class JobPublic(Schema):
    id: str
    status: JobStatus
    progress: ProgressPublic
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    model_id: str
    dataset_id: str
    eval_dataset_id: str | None
    config: dict[str, Any]
    attempts: int
    cancel_requested: bool

    @classmethod
    def from_record(cls, record: JobRecord) -> Self:
        return cls(
            id=record.id,
            status=record.status,
            progress=ProgressPublic(stage=record.stage, fraction=record.fraction),
            error=record.error,
            created_at=utc(record.created_at),
            started_at=utc_or_none(record.started_at),
            finished_at=utc_or_none(record.finished_at),
            model_id=record.model_id,
            dataset_id=record.dataset_id,
            eval_dataset_id=record.eval_dataset_id,
            config=record.config,
            attempts=record.attempts,
            cancel_requested=record.cancel_requested,
        )


class JobsPublic(Schema):
    data: list[JobPublic]
    count: int = Field(description="all of the caller's jobs, not only this page")


class ArtifactPublic(Schema):
    name: str
    bytes: int
    media_type: str

    @classmethod
    def from_info(cls, info: ArtifactInfo) -> Self:
        return cls(name=info.name, bytes=info.bytes, media_type=info.media_type)
