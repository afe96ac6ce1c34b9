"""A job's configuration (`jobs.job_config.JobConfig`, as its row stores it) and the engine's
`PruneConfig`: the one place the two meet.

The API stores a `JobConfig`'s JSON in the job's row, `deadweight prune` builds one from its
flags, and the sandboxed engine (`worker.engine_process`) turns it into a `PruneConfig` here.
Batch size, device and the parameter limit are the worker's settings, not the job's, so they
are given separately.
"""

from __future__ import annotations

from typing import Any

from jobs.job_config import JobConfig
from pruning.config import PruneConfig, Recovery, Threshold, default_thresholds
from pruning.errors import InvalidConfig


def prune_config(
    job: JobConfig, batch_size: int, device: str, max_parameters: int | None = None
) -> PruneConfig:
    """The engine's configuration of a job, checked.

    Raises:
        InvalidConfig: a setting the engine refuses, naming it.
    """
    recovery = job.recovery
    return PruneConfig(
        criterion=job.criterion,
        thresholds=tuple(Threshold(t.mean, t.std, t.fraction) for t in job.thresholds)
        if job.thresholds
        else default_thresholds(),
        compensate=job.compensate,
        allocation=job.allocation,
        recovery=None
        if recovery is None
        else Recovery(recovery.epochs, recovery.lr, recovery.max_seconds, recovery.batch_size),
        search=job.search,
        seed=job.seed,
        metric=job.metric,
        max_metric_drop=job.max_metric_drop,
        batch_size=batch_size,
        device=device,
        max_parameters=max_parameters,
    )


def job_part(config: PruneConfig) -> JobConfig:
    """The job's part of an engine configuration (what a stored job carries)."""
    return JobConfig(
        criterion=config.criterion,
        thresholds=config.thresholds,
        compensate=config.compensate,
        allocation=config.allocation,
        recovery=config.recovery,
        search=config.search,
        seed=config.seed,
        metric=config.metric,
        max_metric_drop=config.max_metric_drop,
    )


def config_to_json(config: PruneConfig) -> dict[str, Any]:
    """The job's part of a configuration, as a stored job carries it."""
    return job_part(config).to_json()


def config_from_json(
    config: dict[str, Any], batch_size: int, device: str, max_parameters: int | None = None
) -> PruneConfig:
    """The engine's configuration from a stored job's JSON (written by the API or the CLI).

    Raises:
        InvalidConfig: a stored value this release does not know, or one the engine refuses.
    """
    try:
        job = JobConfig.from_json(config)
    except (ValueError, TypeError) as exc:
        raise InvalidConfig(f"the job's stored configuration is unreadable: {exc}") from exc
    return prune_config(job, batch_size, device, max_parameters)
