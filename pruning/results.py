"""What a run produces: per-layer statistics, candidates, and the choice among them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one channel group's neurons, as the consuming layer sees them."""

    name: str  # the group's name: the producing layer (e.g. "fc1")
    neurons: int
    count: int  # activations accumulated per neuron (samples x positions)
    mean: list[float]
    std: list[float]
    abs_mean: list[float]
    zero_fraction: list[float]
    min: list[float]
    max: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "neurons": self.neurons,
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "abs_mean": self.abs_mean,
            "zero_fraction": self.zero_fraction,
            "min": self.min,
            "max": self.max,
        }


@dataclass(frozen=True)
class Baseline:
    metric: float
    parameters: int
    bytes: int
    macs: int
    # Measured on the run's device (`pruning.latency.Latency.as_dict`); None: not measured.
    latency_ms: dict[str, Any] | None = None
    # The original program's checked ONNX copy (`baseline.onnx`), shaped as a candidate's;
    # None: not asked for, or not written (the run's notes say why).
    onnx: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "parameters": self.parameters,
            "bytes": self.bytes,
            "macs": self.macs,
            "latency_ms": self.latency_ms,
            "onnx": self.onnx,
        }


@dataclass(frozen=True)
class Candidate:
    index: int
    threshold: dict[str, float]
    metric: float
    metric_drop: float
    parameters: int
    bytes: int
    macs: int
    size_reduction: float
    kept: dict[str, int]  # group name -> neurons kept, in graph order
    kept_fraction: dict[str, float]
    artifact: str  # file name of the pruned program, e.g. "pruned-0.pt2"
    same_as: int | None = None  # index of an earlier candidate with the identical keep-set
    # With recovery: the metric of the cut (compensated) model before fine-tuning, and what
    # the fine-tuning did (epochs, steps, seconds, stopped_early, final_loss).
    metric_before_recovery: float | None = None
    recovery: dict[str, Any] | None = None
    allocation: str = "global"  # how its fraction was spread ("global" | "uniform")
    latency_ms: dict[str, Any] | None = None  # as the baseline's; shared with `same_as`
    # Its checked ONNX copy (`pruning.onnx_export.OnnxCopy.as_dict`); None: not asked for, or
    # not written (the run's notes say why).
    onnx: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "threshold": self.threshold,
            "metric": self.metric,
            "metric_drop": self.metric_drop,
            "parameters": self.parameters,
            "bytes": self.bytes,
            "macs": self.macs,
            "size_reduction": self.size_reduction,
            "kept": self.kept,
            "kept_fraction": self.kept_fraction,
            "artifact": self.artifact,
            "same_as": self.same_as,
            "metric_before_recovery": self.metric_before_recovery,
            "recovery": self.recovery,
            "allocation": self.allocation,
            "latency_ms": self.latency_ms,
            "onnx": self.onnx,
        }


@dataclass(frozen=True)
class Results:
    metric_name: str  # "accuracy" | "agreement" | "mse"
    criterion: str
    compensate: str  # "none" | "mean" | "linear"
    max_metric_drop: float
    baseline: Baseline
    candidates: list[Candidate]
    pareto: list[int]
    recommended: int | None
    layers: list[str]  # prunable groups, in graph order
    frozen: list[dict[str, str]] = field(default_factory=list)  # [{"name", "reason"}]
    notes: list[str] = field(default_factory=list)
    allocation: str = "global"
    search: bool = False
    recovery: dict[str, Any] | None = None  # the job's recovery settings, None: off
    # Which samples served what: {"statistics", "evaluation", "training"?, "holdout"?}
    data: dict[str, Any] = field(default_factory=dict)
    max_latency_ms: float | None = None  # the job's latency budget; None: none
    latency: dict[str, Any] | None = None  # how latency was measured; None: it was not

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric_name,
            "criterion": self.criterion,
            "compensate": self.compensate,
            "max_metric_drop": self.max_metric_drop,
            "baseline": self.baseline.as_dict(),
            "candidates": [c.as_dict() for c in self.candidates],
            "pareto": self.pareto,
            "recommended": self.recommended,
            "layers": self.layers,
            "frozen": self.frozen,
            "notes": self.notes,
            "allocation": self.allocation,
            "search": self.search,
            "recovery": self.recovery,
            "data": self.data,
            "max_latency_ms": self.max_latency_ms,
            "latency": self.latency,
        }
