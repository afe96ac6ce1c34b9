"""Thresholds become plans: absolute and fractional, never emptying a layer."""

from __future__ import annotations

import torch

from jobs.job_config import Allocation, Criterion
from pruning.config import Threshold, parse_thresholds
from pruning.criteria import Ranking, allocate, equal_parts, select
from pruning.stats import RunningStats


def _stats(mean: list[float], std: list[float]) -> RunningStats:
    s = RunningStats(channels=len(mean))
    s.mean = torch.tensor(mean, dtype=torch.float64)
    s.m2 = torch.tensor(std, dtype=torch.float64) ** 2  # count 2 -> std == sqrt(m2)
    s.count = 2
    return s


def test_seed_drops_only_when_both_mean_and_std_are_small() -> None:
    stats = {"a": _stats([0.0, 0.05, 2.0, 0.01], [0.01, 0.9, 0.01, 0.2])}
    plan = select(Criterion.SEED, stats, Threshold(mean=0.1, std=0.4))
    assert plan == {"a": [1, 2]}


def test_variance_ignores_the_mean() -> None:
    stats = {"a": _stats([0.0, 0.05, 2.0, 0.01], [0.01, 0.9, 0.01, 0.2])}
    assert select(Criterion.VARIANCE, stats, Threshold(std=0.1)) == {"a": [1, 3]}


def test_absolute_threshold_never_empties_a_layer() -> None:
    stats = {"a": _stats([0.0, 0.0, 0.0], [0.01, 0.03, 0.02])}
    assert select(Criterion.VARIANCE, stats, Threshold(std=1.0)) == {"a": [1]}


def test_fraction_drops_that_share_of_all_prunable_neurons_across_layers() -> None:
    stats = {
        "a": _stats([0.0] * 4, [1.0, 2.0, 3.0, 4.0]),
        "b": _stats([0.0] * 6, [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]),
    }
    plan = select(Criterion.VARIANCE, stats, Threshold(fraction=0.5))
    assert sum(len(v) for v in plan.values()) == 5
    # Layer-relative scores: layer b's scale does not protect it.
    assert len(plan["b"]) < 6
    assert all(plan[name] for name in plan)


def test_fraction_keeps_one_neuron_per_layer() -> None:
    stats = {"a": _stats([0.0] * 3, [0.0, 0.0, 0.0]), "b": _stats([0.0] * 3, [1.0, 1.0, 1.0])}
    plan = select(Criterion.VARIANCE, stats, Threshold(fraction=0.99))
    assert len(plan["a"]) == 1 and len(plan["b"]) == 1


def test_grouped_conv_runs_keep_equal_counts_taking_back_the_best_removed() -> None:
    # 2 runs of 4: the threshold drops 3 of run 0 and 1 of run 1.
    stats = {"g": _stats([0.0] * 8, [0.01, 0.03, 0.02, 5.0, 4.0, 0.01, 3.0, 2.0])}
    plain = select(Criterion.VARIANCE, stats, Threshold(std=0.05))
    assert plain == {"g": [3, 4, 6, 7]}
    even = select(Criterion.VARIANCE, stats, Threshold(std=0.05), parts={"g": 2})
    # Run 1 keeps 3, so run 0 takes back its two best (std 0.03 and 0.02): never more removed.
    assert even == {"g": [1, 2, 3, 4, 6, 7]}


def test_equal_parts_keeps_a_plan_that_is_already_even() -> None:
    scores = torch.arange(6, dtype=torch.float64)
    assert equal_parts([0, 4], scores, 2) == [0, 4]
    assert equal_parts([0, 1, 2, 3, 4, 5], scores, 3) == [0, 1, 2, 3, 4, 5]


def test_parse_thresholds() -> None:
    assert parse_thresholds("0.1:0.4,0.5:1") == (
        Threshold(mean=0.1, std=0.4),
        Threshold(mean=0.5, std=1.0),
    )
    assert parse_thresholds("f0.2, f0.4") == (Threshold(fraction=0.2), Threshold(fraction=0.4))


def test_a_global_budget_counts_a_head_as_its_neurons() -> None:
    """A head of 8 output features is 8 neurons of the budget, not one: otherwise a
    fraction of all neurons would barely touch attention."""
    rankings = {
        "heads": Ranking(4, [0, 1, 2], [0.1, 0.2, 0.9]),
        "mlp": Ranking(16, list(range(15)), [0.3 + 0.01 * k for k in range(15)]),
    }
    # 0.5 x (4 x 8 + 16) = 24 neurons: two cheap heads (16), then 8 channels.
    plan = allocate(rankings, 0.5, Allocation.GLOBAL, {"heads": 8})
    assert plan["heads"] == [2, 3]
    assert plan["mlp"] == list(range(8, 16))
    # A head that would overshoot the budget stays; the next cheapest neurons fill it.
    plan = allocate(rankings, 0.25, Allocation.GLOBAL, {"heads": 8})  # 12 neurons
    assert plan["heads"] == [1, 2, 3] and len(plan["mlp"]) == 12
    # Counted as one neuron each, 0.25 of 20 "neurons" would take two heads (32 features).
    plan = allocate(rankings, 0.25, Allocation.GLOBAL)
    assert plan["heads"] == [2, 3] and len(plan["mlp"]) == 13
