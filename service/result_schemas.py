"""The bodies of `GET /v1/jobs/{id}/results` and `/stats`: what the engine publishes.

The routes stream the JSON files the worker wrote (`pruning/report/files.py`, from
`pruning.results`), so these models document them and validate nothing at run time. Every
number the engine computes may be null: NaN and infinity are not JSON, and the engine writes
them as null (an `mse` that overflowed, the std of a neuron seen once). Unknown keys are
allowed, as the contract says fields may be added; tests/service/test_result_schemas.py
checks these models key for key against the files of a real run.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from jobs.job_config import Allocation, Compensation, Criterion, Metric
from service.schemas import Schema


class PublishedSchema(Schema):
    # Fields may be added to what a job publishes (CONTRACT.md); a client ignores the rest.
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class TimingOnePublic(PublishedSchema):
    median: float = Field(description="median of the timed forwards, milliseconds")
    p90: float = Field(description="90th percentile of the timed forwards, milliseconds")
    runs: int = Field(description="timed forwards (after the warm-up ones)")


class TimingPublic(TimingOnePublic):
    size: int = Field(description="rows per forward: the job's batch size (or fewer rows)")


class LatencyPublic(PublishedSchema):
    batch_1: TimingOnePublic | None = Field(
        description="one row per forward; null for a model exported with a fixed batch size"
    )
    batch: TimingPublic


class LatencySettingsPublic(PublishedSchema):
    device: str = Field(description="the torch device timed on (cpu, cuda:0)")
    device_name: str
    threads: int = Field(description="torch's intra-op threads during the timings")
    warmup_runs: int
    min_runs: int
    max_runs: int
    budget_seconds: float = Field(description="per model and batch size, after min_runs")
    statistic: str
    budget_figure: str = Field(description="the figure max_latency_ms is compared with")


class OnnxCopyPublic(PublishedSchema):
    file: str = Field(
        description="pruned-<k>.onnx (a candidate's) or baseline.onnx among the job's artifacts"
    )
    bytes: int
    max_abs_diff: float = Field(
        description="largest |ONNX Runtime output - program output| on the checked rows (the "
        "program: the candidate's .pt2, or the uploaded model for the baseline)"
    )
    checked_rows: int = Field(description="evaluation rows compared (in two batch sizes)")
    tolerance: float = Field(
        description="the largest difference allowed: 1e-4 x max(1, largest |output|)"
    )


class BaselinePublic(PublishedSchema):
    metric: float | None = Field(description="the original model's metric")
    parameters: int
    bytes: int = Field(description="size of the original program's saved weights")
    macs: int = Field(description="multiply-accumulates for one sample")
    latency_ms: LatencyPublic | None = Field(
        None, description="measured on the worker's device; null: not measured"
    )
    onnx: OnnxCopyPublic | None = Field(
        None,
        description='its checked ONNX copy, baseline.onnx (formats with "onnx"); '
        "null: not asked for, or not written (the notes say why)",
    )


class RecoveryReportPublic(PublishedSchema):
    batchnorm_reestimated: int = Field(description="BatchNorm layers re-estimated on the data")
    epochs: float = Field(description="epochs run (fractional when stopped early)")
    steps: int
    seconds: float
    stopped_early: bool = Field(description="max_seconds reached, or the loss diverged")
    final_loss: float | None
    diverged: bool


class CandidatePublic(PublishedSchema):
    index: int = Field(description="position in the job's thresholds (or the search's probes)")
    threshold: dict[str, float] = Field(description='{"fraction"} or {"mean", "std"} or {"std"}')
    metric: float | None
    metric_drop: float | None = Field(
        description="baseline metric minus this one (for mse: the increase)"
    )
    parameters: int
    bytes: int = Field(description="size of the pruned .pt2 artifact")
    macs: int
    size_reduction: float = Field(description="1 - parameters / baseline parameters")
    kept: dict[str, int] = Field(description="neurons kept per prunable layer, in graph order")
    kept_fraction: dict[str, float]
    artifact: str = Field(description="the pruned program among the job's artifacts")
    same_as: int | None = Field(
        description="an earlier candidate with the same keep-set (evaluated once)"
    )
    metric_before_recovery: float | None = Field(
        description="with recovery: the metric of the cut model before fine-tuning"
    )
    recovery: RecoveryReportPublic | None = Field(description="with recovery: what it did")
    allocation: Allocation = Field(description="how this candidate's fraction was spread")
    latency_ms: LatencyPublic | None = Field(
        None,
        description="measured on the worker's device, once per keep-set; null: not measured",
    )
    onnx: OnnxCopyPublic | None = Field(
        None,
        description='its checked ONNX copy (formats with "onnx"); null: not asked for, or not '
        "written (the notes say why)",
    )


class FrozenPublic(PublishedSchema):
    name: str
    reason: str = Field(description="why the group cannot be cut")


class RecoverySettingsPublic(PublishedSchema):
    epochs: int
    lr: float
    max_seconds: float | None
    batch_size: int


class HoldoutPublic(PublishedSchema):
    fraction: float
    seed: int
    samples: int = Field(description="rows held out")
    rule: str = Field(description="which rows, reproducibly")


class DataUsePublic(PublishedSchema):
    statistics: str = Field(description="the samples the statistics were taken on")
    evaluation: str = Field(description="the samples the candidates were evaluated on")
    training: str | None = Field(None, description="with recovery: the samples trained on")
    holdout: HoldoutPublic | None = Field(
        None, description="present when part of the dataset was held out to evaluate"
    )


class MlflowRunPublic(PublishedSchema):
    run_id: str
    experiment_id: str
    run_url: str | None = Field(
        description="the run's page on the tracking server (http(s) servers); null: none"
    )


class ResultsPublic(PublishedSchema):
    """The sweep table: baseline, candidates, Pareto front and recommendation."""

    metric: Metric
    criterion: Criterion
    compensate: Compensation
    max_metric_drop: float
    baseline: BaselinePublic
    candidates: list[CandidatePublic] = Field(description="in the order of the thresholds")
    pareto: list[int] = Field(description="indices of the candidates on the front")
    recommended: int | None = Field(
        description="the smallest candidate within max_metric_drop (and max_latency_ms, when "
        "given); null: none is"
    )
    layers: list[str] = Field(description="prunable layers, in graph order")
    frozen: list[FrozenPublic]
    notes: list[str]
    allocation: Allocation
    search: bool
    recovery: RecoverySettingsPublic | None = Field(description="the job's recovery settings")
    data: DataUsePublic = Field(description="which samples served what")
    max_latency_ms: float | None = Field(
        None, description="the job's latency budget for the recommendation; null: none"
    )
    latency: LatencySettingsPublic | None = Field(
        None, description="how latency_ms was measured; null: it was not"
    )
    mlflow: MlflowRunPublic | None = Field(
        None,
        description="a job with mlflow: the run it logged (absent when none was created; "
        "notes then say why)",
    )


class LayerStatsPublic(PublishedSchema):
    name: str = Field(description="the prunable layer (channel group)")
    neurons: int
    count: int = Field(description="activations seen per neuron (samples x positions)")
    mean: list[float | None]
    std: list[float | None] = Field(description="Bessel-corrected, as torch.std")
    abs_mean: list[float | None]
    zero_fraction: list[float | None] = Field(description="share of exact zeros (APoZ)")
    min: list[float | None]
    max: list[float | None]


class StatsPublic(PublishedSchema):
    """Per-neuron activation statistics, as the next layer sees them."""

    layers: list[LayerStatsPublic]
