"""The engine's configuration of a job (`PruneConfig.of`): a PruneConfig is the job's
configuration, checked, plus the worker's settings — and it refuses what the API refuses."""

from __future__ import annotations

import pytest

from jobs.job_config import (
    Allocation,
    Compensation,
    Criterion,
    JobConfig,
    Metric,
    RecoverySpec,
    ThresholdSpec,
)
from pruning.config import PruneConfig, Recovery, Threshold, default_thresholds
from pruning.errors import InvalidConfig

JOB = JobConfig(
    criterion=Criterion.SEED,
    thresholds=(ThresholdSpec(mean=0.1, std=0.4), ThresholdSpec(fraction=0.3)),
    compensate=Compensation.MEAN,
    allocation=Allocation.UNIFORM,
    recovery=RecoverySpec(epochs=2, lr=0.01, max_seconds=60.0, batch_size=8),
    seed=7,
    metric=Metric.MSE,
    max_metric_drop=0.02,
)


def test_the_engine_config_of_a_job() -> None:
    config = PruneConfig.of(JOB, batch_size=32, device="cpu", max_parameters=10**6)
    assert config == PruneConfig(
        criterion=Criterion.SEED,
        thresholds=(Threshold(mean=0.1, std=0.4), Threshold(fraction=0.3)),
        compensate=Compensation.MEAN,
        allocation=Allocation.UNIFORM,
        recovery=Recovery(epochs=2, lr=0.01, max_seconds=60.0, batch_size=8),
        seed=7,
        metric=Metric.MSE,
        max_metric_drop=0.02,
        batch_size=32,
        device="cpu",
        max_parameters=10**6,
    )
    # A PruneConfig is a JobConfig: what a job stores, `deadweight prune` stores alike.
    assert config.to_json() == JOB.to_json()
    assert JobConfig.from_json(config.to_json()) == JOB


def test_a_config_survives_the_round_trip_through_a_stored_job() -> None:
    config = PruneConfig(
        criterion=Criterion.VARIANCE,
        thresholds=(Threshold(fraction=0.3), Threshold(fraction=0.6)),
        compensate=Compensation.MEAN,
        allocation=Allocation.UNIFORM,
        recovery=Recovery(epochs=2, lr=0.01, max_seconds=5.0),
        seed=7,
        metric=Metric.AGREEMENT,
        max_metric_drop=0.02,
        batch_size=16,
    )
    stored = JobConfig.from_json(config.to_json())
    assert PruneConfig.of(stored, batch_size=16, device="cpu") == config


def test_a_job_without_thresholds_runs_the_default_sweep() -> None:
    config = PruneConfig.of(JobConfig.from_json({}), 256, "cpu")
    assert config.criterion is Criterion.SEED  # the first release's default
    assert config.thresholds == default_thresholds()


def test_the_engine_refuses_what_the_api_would() -> None:
    bad = JobConfig(Criterion.RECONSTRUCTION, (ThresholdSpec(mean=0.1, std=0.4),))
    with pytest.raises(InvalidConfig, match="takes fractions"):
        PruneConfig.of(bad, 256, "cpu")
    with pytest.raises(InvalidConfig, match="recovery epochs"):
        PruneConfig.of(JobConfig(Criterion.SEED, recovery=RecoverySpec(epochs=-1)), 256, "cpu")
    with pytest.raises(InvalidConfig, match="auto"):
        PruneConfig.of(JobConfig(Criterion.RECONSTRUCTION, allocation=Allocation.AUTO), 256, "cpu")


def test_library_callers_may_name_the_choices_and_unknown_names_are_refused() -> None:
    config = PruneConfig(
        criterion="variance",  # type: ignore[arg-type]
        allocation="uniform",  # type: ignore[arg-type]
        metric="mse",  # type: ignore[arg-type]
    )
    assert config.criterion is Criterion.VARIANCE
    assert config.allocation is Allocation.UNIFORM
    assert config.metric is Metric.MSE
    with pytest.raises(InvalidConfig, match="allocation 'even' is not one of: global, uniform"):
        PruneConfig(allocation="even")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="criterion 'magnitude'"):
        PruneConfig(criterion="magnitude")  # type: ignore[arg-type]
