"""The choice among candidates: the Pareto front (metric vs. parameters) and the recommendation.

Pure functions over `(metric, parameters)` points, one per candidate, in candidate order; they
return positions in that list. A NaN metric (an evaluation that blew up) is never chosen.
"""

from __future__ import annotations

import math

# Metrics are averages over a dataset: a drop computed as 0.967 - 0.962 is 0.0050000000000000044.
# Within the budget means within it up to this rounding, relative to the baseline's magnitude.
_ROUNDING = 1e-9


def metric_drop(baseline_metric: float, metric: float, higher_is_better: bool) -> float:
    """How much worse than the baseline: the decrease, or the increase for lower-is-better."""
    return baseline_metric - metric if higher_is_better else metric - baseline_metric


def pareto_front(points: list[tuple[float, int]], higher_is_better: bool) -> list[int]:
    """Positions of the candidates no other candidate beats on both metric and size.

    A point is dominated when another has no more parameters and no worse a metric, and is
    strictly better on one of them. Identical points (candidates with the same keep-set)
    do not dominate each other, so all of them are on the front.

    Args:
        points: `(metric, parameters)` per candidate.
        higher_is_better: False for metrics such as MSE.

    Returns:
        Positions in `points`, ascending.
    """
    sign = 1.0 if higher_is_better else -1.0
    scored = [(sign * m, p) for m, p in points]  # higher score is better

    def dominated(i: int) -> bool:
        score, params = scored[i]
        return any(
            s >= score and p <= params and (s > score or p < params)
            for j, (s, p) in enumerate(scored)
            if j != i and not math.isnan(s)
        )

    return [i for i, (s, _) in enumerate(scored) if not math.isnan(s) and not dominated(i)]


def within_budget(
    baseline_metric: float, metric: float, max_drop: float, higher_is_better: bool
) -> bool:
    """Whether a metric's drop from the baseline stays within `max_drop` (up to rounding)."""
    tolerance = _ROUNDING * max(1.0, abs(baseline_metric))
    return not math.isnan(metric) and (
        metric_drop(baseline_metric, metric, higher_is_better) <= max_drop + tolerance
    )


def recommend(
    baseline_metric: float,
    points: list[tuple[float, int]],
    max_drop: float,
    higher_is_better: bool,
) -> int | None:
    """The smallest candidate whose metric drop stays within the budget.

    Args:
        baseline_metric: the unpruned model's metric.
        points: `(metric, parameters)` per candidate.
        max_drop: the largest acceptable drop (`metric_drop`), >= 0.
        higher_is_better: False for metrics such as MSE.

    Returns:
        The position of the candidate with the fewest parameters among those within the
        budget; ties go to the better metric, then to the earlier candidate. None when no
        candidate is within the budget.
    """
    sign = 1.0 if higher_is_better else -1.0
    within = [
        (params, -sign * metric, i)
        for i, (metric, params) in enumerate(points)
        if within_budget(baseline_metric, metric, max_drop, higher_is_better)
    ]
    return min(within)[2] if within else None
