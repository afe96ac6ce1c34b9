"""The choice among candidates: the Pareto front (metric vs. parameters) and the recommendation.

Pure functions over `(metric, parameters)` points, one per candidate, in candidate order; they
return positions in that list. A NaN metric (an evaluation that blew up) is never chosen.
A latency budget (`max_latency_ms`) is a second constraint, never the objective: measured
latency is noisy, parameter counts are not, so the smallest candidate within both budgets is
recommended, and a run repeated on the same machine recommends the same one unless a
candidate's latency sits at the budget's edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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


def budget_figure(latency_ms: Mapping[str, Any] | None) -> float | None:
    """What `max_latency_ms` is compared with, from a published `latency_ms`
    (`pruning.latency.Latency.as_dict`): the batch-1 median, or the job batch's median for
    a model exported with a fixed batch size; None: not measured."""
    if latency_ms is None:
        return None
    timing = latency_ms.get("batch_1") or latency_ms["batch"]
    return float(timing["median"])


def within_latency(latency_ms: float | None, max_latency_ms: float | None) -> bool:
    """Whether a measured latency stays within the budget; no budget admits everything, a
    budget admits no unmeasured (None) or NaN figure."""
    if max_latency_ms is None:
        return True
    return latency_ms is not None and not math.isnan(latency_ms) and latency_ms <= max_latency_ms


def recommend(
    baseline_metric: float,
    points: list[tuple[float, int]],
    max_drop: float,
    higher_is_better: bool,
    *,
    latencies: Sequence[float | None] | None = None,
    max_latency_ms: float | None = None,
) -> int | None:
    """The smallest candidate whose metric drop stays within the budget (and whose latency
    stays within the latency budget, when there is one).

    Args:
        baseline_metric: the unpruned model's metric.
        points: `(metric, parameters)` per candidate.
        max_drop: the largest acceptable drop (`metric_drop`), >= 0.
        higher_is_better: False for metrics such as MSE.
        latencies: each candidate's latency figure in ms (`budget_figure`: the
            batch-1 median), None where it was not measured; needed with `max_latency_ms`.
        max_latency_ms: the largest acceptable latency figure; None: no latency budget.

    Returns:
        The position of the candidate with the fewest parameters among those within the
        budgets; ties go to the better metric, then to the lower latency, then to the
        earlier candidate. None when no candidate is within them.
    """
    sign = 1.0 if higher_is_better else -1.0
    times: Sequence[float | None] = [None] * len(points) if latencies is None else latencies
    if len(times) != len(points):
        raise ValueError(f"{len(points)} candidates but {len(times)} latencies")
    within = [
        (params, -sign * metric, _sortable(time), i)
        for i, ((metric, params), time) in enumerate(zip(points, times, strict=True))
        if within_budget(baseline_metric, metric, max_drop, higher_is_better)
        and within_latency(time, max_latency_ms)
    ]
    return min(within)[3] if within else None


def _sortable(latency_ms: float | None) -> float:
    """An unmeasured or NaN latency sorts last (NaN would make tuple order arbitrary)."""
    return math.inf if latency_ms is None or math.isnan(latency_ms) else latency_ms
