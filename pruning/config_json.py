"""A `PruneConfig` as a job stores it (JSON data) and back: the one place the two meet.

The API writes this form into the job's record, `deadweight prune` builds it from its flags,
and the sandboxed engine (`worker.engine_process`) reads it back. Batch size, device and
the parameter limit are the worker's settings, not the job's, so they are given separately.
"""

from __future__ import annotations

from typing import Any

from pruning.config import (
    DEFAULT_MAX_METRIC_DROP,
    Allocation,
    Criterion,
    Metric,
    PruneConfig,
    Recovery,
    Threshold,
    default_thresholds,
)


def config_to_json(config: PruneConfig) -> dict[str, Any]:
    """The job's part of a configuration, as a stored job carries it."""
    return {
        "criterion": config.criterion.value,
        "thresholds": [t.as_dict() for t in config.thresholds],
        "compensate": config.compensate.value,
        "allocation": config.allocation.value,
        "recovery": None if config.recovery is None else config.recovery.as_dict(),
        "search": config.search,
        "seed": config.seed,
        "metric": None if config.metric is None else config.metric.value,
        "max_metric_drop": config.max_metric_drop,
    }


def config_from_json(
    config: dict[str, Any], batch_size: int, device: str, max_parameters: int | None = None
) -> PruneConfig:
    """The engine's configuration from a stored job request (validated by the API)."""
    raw = config.get("thresholds")
    thresholds = (
        tuple(Threshold(**{k: float(v) for k, v in t.items()}) for t in raw)
        if raw
        else default_thresholds()
    )
    metric = config.get("metric")
    recovery = config.get("recovery")
    # Jobs stored before a field existed ran with what was then the behaviour: criterion
    # seed, compensation a boolean (false), global allocation, no recovery, no search.
    return PruneConfig(
        criterion=Criterion(config.get("criterion", "seed")),
        thresholds=thresholds,
        compensate=config.get("compensate", False),
        allocation=Allocation(config.get("allocation", "global")),
        recovery=None if recovery is None else Recovery(**recovery),
        search=bool(config.get("search", False)),
        seed=int(config.get("seed", 0)),
        metric=Metric(metric) if metric else None,
        max_metric_drop=float(config.get("max_metric_drop", DEFAULT_MAX_METRIC_DROP)),
        batch_size=batch_size,
        device=device,
        max_parameters=max_parameters,
    )
