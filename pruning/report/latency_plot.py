"""The trade-off plot's second panel: the metric against measured latency (batch-1 median,
with a bar to its p90), beside the metric against parameters (`pruning.report.tradeoff_plot`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from matplotlib.axes import Axes

from jobs.job_config import Metric
from pruning.choice import budget_figure
from pruning.report.labels import threshold_label
from pruning.results import Results


def has_latency(results: Results) -> bool:
    """Whether the run measured latency (a baseline figure is measured first, or none is)."""
    return results.baseline.latency_ms is not None


def draw_latency_panel(ax: Axes, results: Results) -> None:
    """Each distinct candidate and the baseline at their latency figure (`budget_figure`:
    the batch-1 median), a bar to the p90, the latency budget and the recommended one."""
    points: dict[int, tuple[float, float, float, list[str]]] = {}  # index -> x, p90, y, labels
    for c in results.candidates:
        x = budget_figure(c.latency_ms)
        if x is None or not math.isfinite(c.metric):
            continue
        first = c.index if c.same_as is None else c.same_as
        if first in points:  # same keep-set: one point, one measurement, several labels
            points[first][3].append(threshold_label(c.threshold))
            continue
        points[first] = (x, _p90(c.latency_ms), c.metric, [threshold_label(c.threshold)])
    for index, (x, p90, y, labels) in points.items():
        chosen = index == results.recommended
        ax.errorbar(
            [x],
            [y],
            xerr=[[0.0], [max(p90 - x, 0.0)]],
            fmt="o",
            color="C2" if chosen else "0.45",
            markersize=9 if chosen else 5,
            capsize=3,
            zorder=3,
        )
        ax.annotate(
            ", ".join(labels),
            (x, y),
            xytext=(7, 7),
            textcoords="offset points",
            fontsize=8,
            color="C2" if chosen else "0.25",
        )
    _draw_baseline(ax, results)
    ax.set_xlabel(_axis_label(results))
    ax.set_title("vs. measured latency (median, bar to p90)")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.12)


def _draw_baseline(ax: Axes, results: Results) -> None:
    b = results.baseline
    x = budget_figure(b.latency_ms)
    if x is None:
        return
    ax.errorbar(
        [x],
        [b.metric],
        xerr=[[0.0], [max(_p90(b.latency_ms) - x, 0.0)]],
        fmt="*",
        color="black",
        markersize=14,
        capsize=3,
        zorder=4,
        label="baseline (unpruned)",
    )
    up = Metric(results.metric_name).higher_is_better
    budget = b.metric - results.max_metric_drop if up else b.metric + results.max_metric_drop
    ax.axhline(budget, color="C3", linestyle="--", linewidth=1)
    if results.max_latency_ms is not None:
        ax.axvline(
            results.max_latency_ms,
            color="C3",
            linestyle=":",
            linewidth=1.2,
            label=f"max latency {results.max_latency_ms:g} ms",
        )
        ax.legend(loc="best", fontsize=9)


def _p90(latency_ms: Mapping[str, Any] | None) -> float:
    """The p90 beside `budget_figure`'s median (NaN: not measured)."""
    if latency_ms is None:
        return math.nan
    timing = latency_ms.get("batch_1") or latency_ms["batch"]
    return float(timing["p90"])


def _axis_label(results: Results) -> str:
    where = "" if results.latency is None else f" on {results.latency.get('device', '?')}"
    one = results.baseline.latency_ms is not None and results.baseline.latency_ms.get("batch_1")
    return f"ms per forward, {'batch size 1' if one else 'the job batch'}{where}"
