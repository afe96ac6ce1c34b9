"""A job's PruneConfig as the job's row stores it, and back."""

from __future__ import annotations


def test_a_config_survives_the_round_trip_through_a_stored_job() -> None:
    from pruning.config import (
        Allocation,
        Compensation,
        Criterion,
        Metric,
        PruneConfig,
        Recovery,
        Threshold,
    )
    from pruning.config_json import config_from_json, config_to_json

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
        device="cpu",
    )
    stored = config_to_json(config)
    assert config_from_json(stored, batch_size=16, device="cpu") == config
