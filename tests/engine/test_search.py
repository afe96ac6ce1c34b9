"""The budget search: bisection over the fraction, with one or both allocations."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.job_config import Allocation, Compensation
from pruning.config import PruneConfig
from pruning.search import PROBES
from pruning.sweep import run
from tests.engine.blob_classifier import Trained, data, train_blob_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_blob_classifier(tmp_path_factory.mktemp("m"))


def test_search_recommends_a_candidate_within_budget_and_the_next_probe_is_not(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(
        search=True, compensate=Compensation.NONE, max_metric_drop=0.02, measure_latency=False
    )
    results = run(path, data(x[:400], y[:400]), data(x[400:], y[400:]), config, tmp_path)
    assert results.search and len(results.candidates) == PROBES
    fractions = [c.threshold["fraction"] for c in results.candidates]
    assert fractions[0] == 0.5 and len(set(fractions)) == PROBES
    best = next(c for c in results.candidates if c.index == results.recommended)
    assert best.metric_drop <= 0.02
    larger = [c for c in results.candidates if c.threshold["fraction"] > best.threshold["fraction"]]
    if larger:
        nearest = min(larger, key=lambda c: c.threshold["fraction"])
        assert nearest.metric_drop > 0.02
    assert best.parameters == min(c.parameters for c in results.candidates if c.metric_drop <= 0.02)


def test_auto_allocation_searches_with_both_and_recommends_the_smallest_within_budget(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from pruning.errors import InvalidConfig

    path, x, y = trained
    config = PruneConfig(
        search=True, allocation=Allocation.AUTO, max_metric_drop=0.02, measure_latency=False
    )
    results = run(path, data(x[:400], y[:400]), data(x[400:], y[400:]), config, tmp_path)
    assert [c.index for c in results.candidates] == list(range(2 * PROBES))
    assert [c.allocation for c in results.candidates] == ["global"] * PROBES + ["uniform"] * PROBES
    within = [c for c in results.candidates if c.metric_drop <= 0.02]
    best = next(c for c in results.candidates if c.index == results.recommended)
    assert best.parameters == min(c.parameters for c in within)
    with pytest.raises(InvalidConfig, match="needs search"):
        PruneConfig(allocation=Allocation.AUTO)
