"""A job's configuration: its stored JSON round-trips, rows of earlier releases still read as
they then ran, and the rules the API and the engine share. (The engine's side, `PruneConfig.of`,
is tested in tests/engine/test_prune_config.py.)"""

from __future__ import annotations

import json

import pytest

from jobs.job_config import (
    Allocation,
    Compensation,
    Criterion,
    JobConfig,
    Metric,
    RecoverySpec,
    ThresholdSpec,
    criterion_for,
    resolve_metric,
)
from jobs.store import JobStore

FULL = JobConfig(
    criterion=Criterion.SEED,
    thresholds=(ThresholdSpec(mean=0.1, std=0.4), ThresholdSpec(fraction=0.3)),
    compensate=Compensation.MEAN,
    allocation=Allocation.UNIFORM,
    recovery=RecoverySpec(epochs=2, lr=0.01, max_seconds=60.0, batch_size=8),
    search=False,
    seed=7,
    metric=Metric.MSE,
    max_metric_drop=0.02,
)


def test_a_job_config_round_trips_through_its_json() -> None:
    for config in (FULL, JobConfig(criterion=Criterion.RECONSTRUCTION, search=True)):
        stored = json.loads(json.dumps(config.to_json()))  # as the job's row holds it
        assert JobConfig.from_json(stored) == config


def test_the_stored_form_is_the_one_earlier_releases_wrote() -> None:
    # Byte for byte, keys in this order: the API shows it as stored, old rows must still run.
    assert json.dumps(FULL.to_json()) == (
        '{"criterion": "seed", "thresholds": [{"mean": 0.1, "std": 0.4}, {"fraction": 0.3}], '
        '"compensate": "mean", "allocation": "uniform", "recovery": {"epochs": 2, "lr": 0.01, '
        '"max_seconds": 60.0, "batch_size": 8}, "search": false, "seed": 7, "metric": "mse", '
        '"max_metric_drop": 0.02}'
    )
    variance = JobConfig(Criterion.VARIANCE, (ThresholdSpec(std=0.2),))
    assert variance.to_json()["thresholds"] == [{"std": 0.2}]
    assert JobConfig(Criterion.RECONSTRUCTION).to_json()["thresholds"] is None


@pytest.mark.parametrize(
    ("stored", "compensate"),
    [
        ({}, Compensation.NONE),  # compensation was a boolean, false by default
        ({"compensate": True}, Compensation.MEAN),
        ({"compensate": False}, Compensation.NONE),
    ],
)
def test_a_config_of_an_earlier_release_reads_as_it_then_ran(
    stored: dict[str, object], compensate: Compensation
) -> None:
    first_release = {
        "thresholds": [{"mean": 0.1, "std": 0.4}, {"mean": 1, "std": 2}],
        "metric": "accuracy",
        "max_metric_drop": 0.01,
        **stored,
    }
    config = JobConfig.from_json(first_release)
    assert config == JobConfig(
        criterion=Criterion.SEED,
        thresholds=(ThresholdSpec(mean=0.1, std=0.4), ThresholdSpec(mean=1.0, std=2.0)),
        compensate=compensate,
        allocation=Allocation.GLOBAL,
        recovery=None,
        search=False,
        seed=0,
        metric=Metric.ACCURACY,
        max_metric_drop=0.01,
    )


def test_an_empty_config_is_the_first_releases_default_job() -> None:
    config = JobConfig.from_json({})
    assert (config.criterion, config.thresholds, config.metric) == (Criterion.SEED, None, None)
    assert config.max_metric_drop == 0.005


def test_a_stored_row_reads_back_as_its_job_config(store: JobStore) -> None:
    job = store.jobs.add("acme", "m" * 32, "d" * 32, None, FULL.to_json())
    record = store.jobs.get("acme", job.id)
    assert record is not None and record.job_config() == FULL
    legacy = store.jobs.add("acme", "m" * 32, "d" * 32, None, {"criterion": "seed"})
    assert legacy.config == {"criterion": "seed"}, "the row keeps what was stored"
    assert legacy.job_config() == JobConfig(Criterion.SEED, compensate=Compensation.NONE)


def test_a_value_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="loudest"):
        JobConfig.from_json({"criterion": "loudest"})
    with pytest.raises(TypeError):
        JobConfig.from_json({"thresholds": [{"percentile": 3}]})


def test_one_rule_for_the_default_criterion_and_the_metric() -> None:
    assert criterion_for(None) is Criterion.RECONSTRUCTION
    assert criterion_for([ThresholdSpec(fraction=0.2)]) is Criterion.RECONSTRUCTION
    assert criterion_for([ThresholdSpec(std=0.2)]) is Criterion.VARIANCE
    assert (
        criterion_for([ThresholdSpec(std=0.2), ThresholdSpec(mean=0.1, std=0.2)]) is Criterion.SEED
    )
    assert resolve_metric(None, eval_has_labels=True) is Metric.ACCURACY
    assert resolve_metric(None, eval_has_labels=False) is Metric.AGREEMENT
    assert resolve_metric(Metric.MSE, eval_has_labels=True) is Metric.MSE
    with pytest.raises(ValueError, match="needs labels"):
        resolve_metric(Metric.ACCURACY, eval_has_labels=False)
    assert [m.higher_is_better for m in Metric] == [True, True, False]
