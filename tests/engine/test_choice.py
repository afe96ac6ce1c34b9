"""The Pareto front and the recommendation, on hand-made points."""

from __future__ import annotations

import math

import pytest

from jobs.job_config import Metric
from pruning.choice import metric_drop, pareto_front, recommend

# (metric, parameters) per candidate
ACCURACY = [
    (0.960, 500),  # 0
    (0.950, 300),  # 1
    (0.955, 400),  # 2: beats nothing smaller... on the front
    (0.940, 400),  # 3: dominated by 2 (same size, worse) and by 1 (smaller, better)
    (0.900, 100),  # 4
    (0.960, 600),  # 5: dominated by 0 (same metric, larger)
]


def test_metric_direction() -> None:
    assert Metric("accuracy").higher_is_better and Metric("agreement").higher_is_better
    assert not Metric("mse").higher_is_better
    assert metric_drop(0.9, 0.85, True) == pytest.approx(0.05)
    assert metric_drop(0.10, 0.25, False) == pytest.approx(0.15)  # mse rising is a drop
    assert metric_drop(0.10, 0.05, False) == pytest.approx(-0.05)


def test_pareto_front_higher_is_better() -> None:
    assert pareto_front(ACCURACY, higher_is_better=True) == [0, 1, 2, 4]


def test_pareto_front_lower_is_better() -> None:
    mse = [(0.10, 500), (0.20, 300), (0.15, 400), (0.30, 400), (0.50, 100), (0.10, 600)]
    assert pareto_front(mse, higher_is_better=False) == [0, 1, 2, 4]
    # Read as accuracy the same numbers give the opposite front.
    assert pareto_front(mse, higher_is_better=True) == [4]


def test_pareto_front_ties_and_edge_cases() -> None:
    # Identical points (same keep-set) do not dominate each other.
    assert pareto_front([(0.9, 100), (0.9, 100), (0.8, 200)], True) == [0, 1]
    # Same size, different metric: only the better one.
    assert pareto_front([(0.8, 100), (0.9, 100)], True) == [1]
    # Same metric, different size: only the smaller one.
    assert pareto_front([(0.9, 200), (0.9, 100)], True) == [1]
    assert pareto_front([], True) == []
    assert pareto_front([(0.5, 10)], False) == [0]
    # A NaN metric is never on the front, and dominates nothing.
    assert pareto_front([(math.nan, 10), (0.7, 20)], True) == [1]


def test_recommend_smallest_within_budget() -> None:
    # baseline 0.962: drops are 0.002, 0.012, 0.007, 0.022, 0.062, 0.002
    assert recommend(0.962, ACCURACY, max_drop=0.005, higher_is_better=True) == 0
    assert recommend(0.962, ACCURACY, max_drop=0.010, higher_is_better=True) == 2
    assert recommend(0.962, ACCURACY, max_drop=0.015, higher_is_better=True) == 1
    assert recommend(0.962, ACCURACY, max_drop=1.0, higher_is_better=True) == 4


def test_recommend_budget_boundary_is_inclusive_despite_rounding() -> None:
    assert 0.967 - 0.962 > 0.005  # floating point
    assert recommend(0.967, [(0.962, 100)], max_drop=0.005, higher_is_better=True) == 0
    assert recommend(0.967, [(0.9619, 100)], max_drop=0.005, higher_is_better=True) is None


def test_recommend_ties_go_to_the_better_metric_then_the_earlier() -> None:
    points = [(0.950, 100), (0.955, 100), (0.955, 100), (0.960, 200)]
    assert recommend(0.96, points, max_drop=0.02, higher_is_better=True) == 1
    mse = [(0.30, 100), (0.20, 100), (0.10, 300)]
    assert recommend(0.10, mse, max_drop=0.5, higher_is_better=False) == 1


def test_recommend_lower_is_better() -> None:
    mse = [(0.10, 500), (0.20, 300), (0.15, 400), (0.50, 100)]
    assert recommend(0.10, mse, max_drop=0.0, higher_is_better=False) == 0
    assert recommend(0.10, mse, max_drop=0.06, higher_is_better=False) == 2
    assert recommend(0.10, mse, max_drop=0.10, higher_is_better=False) == 1
    # A candidate better than the baseline is always within budget.
    assert recommend(0.10, [(0.05, 900)], max_drop=0.0, higher_is_better=False) == 0


def test_recommend_nothing_within_budget() -> None:
    assert recommend(0.99, ACCURACY, max_drop=0.005, higher_is_better=True) is None
    assert recommend(0.99, [], max_drop=0.5, higher_is_better=True) is None
    assert recommend(0.9, [(math.nan, 10)], max_drop=1.0, higher_is_better=True) is None
    assert recommend(0.01, [(0.5, 10)], max_drop=0.1, higher_is_better=False) is None


def test_recommended_is_on_the_front() -> None:
    for budget in (0.0, 0.005, 0.01, 0.02, 0.1):
        chosen = recommend(0.962, ACCURACY, budget, True)
        assert chosen is None or chosen in pareto_front(ACCURACY, True)
