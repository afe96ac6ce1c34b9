"""The trade-off plot (`tradeoff.png`): the sweep's metric against parameters, with every
candidate, the baseline, the Pareto front, the budget line and the recommended candidate.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from jobs.job_config import Compensation, Metric
from pruning.report.figures import save_png
from pruning.report.labels import threshold_label
from pruning.report.latency_plot import draw_latency_panel, has_latency
from pruning.results import Candidate, Results


def plot_tradeoff(results: Results, path: Path) -> Path:
    """Draw metric against parameters: every candidate, the baseline, the Pareto front, the
    budget line and the recommended candidate.

    Returns:
        `path`, a PNG.
    """
    timed = has_latency(results)  # then a second panel: the metric against latency
    fig = Figure(figsize=(15.0, 5.5) if timed else (8.5, 5.5))
    # Fixed margins: a layout engine would measure the labels and draw the figure twice.
    if timed:
        fig.subplots_adjust(left=0.06, right=0.98, top=0.93, bottom=0.1, wspace=0.12)
    else:
        fig.subplots_adjust(left=0.1, right=0.97, top=0.93, bottom=0.1)
    ax = fig.add_subplot(1, 2 if timed else 1, 1)
    up = Metric(results.metric_name).higher_is_better
    drawn = [c for c in results.candidates if math.isfinite(c.metric)]
    _draw_candidates(ax, results, drawn)
    _draw_baseline(ax, results, up)
    _label_points(ax, drawn)
    _annotate_recommended(ax, results)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"{results.metric_name} ({'higher' if up else 'lower'} is better)")
    extras = (
        "" if results.compensate == Compensation.NONE else f", {results.compensate} compensation"
    )
    if results.recovery is not None:
        extras += ", recovered"
    ax.set_title(f"{results.metric_name} vs. size (criterion {results.criterion}{extras})")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    ax.legend(loc="best", fontsize=9)
    if timed:
        draw_latency_panel(fig.add_subplot(1, 2, 2, sharey=ax), results)
    return save_png(fig, path)


def _draw_candidates(ax: Axes, results: Results, drawn: list[Candidate]) -> None:
    ax.scatter(
        [c.parameters for c in drawn],
        [c.metric for c in drawn],
        color="0.6",
        s=30,
        zorder=2,
        label="candidate",
    )
    front = sorted(
        (c for c in drawn if c.index in results.pareto), key=lambda c: (c.parameters, c.index)
    )
    ax.plot(
        [c.parameters for c in front],
        [c.metric for c in front],
        "o-",
        color="C1",
        markersize=7,
        linewidth=1.8,
        zorder=3,
        label="Pareto front",
    )


def _draw_baseline(ax: Axes, results: Results, up: bool) -> None:
    b = results.baseline
    ax.scatter(
        [b.parameters],
        [b.metric],
        marker="*",
        s=220,
        color="black",
        zorder=4,
        label="baseline (unpruned)",
    )
    budget = b.metric - results.max_metric_drop if up else b.metric + results.max_metric_drop
    ax.axhline(
        budget,
        color="C3",
        linestyle="--",
        linewidth=1,
        label=f"allowed {'drop' if up else 'increase'} {results.max_metric_drop:g}",
    )


def _label_points(ax: Axes, candidates: list[Candidate]) -> None:
    """One label per distinct point: candidates with the same keep-set share one."""
    labels: dict[tuple[int, float], list[str]] = {}
    for c in candidates:
        labels.setdefault((c.parameters, c.metric), []).append(threshold_label(c.threshold))
    for (params, metric), names in labels.items():
        ax.annotate(
            ", ".join(names),
            (params, metric),
            xytext=(7, 7),
            textcoords="offset points",
            fontsize=8,
            color="0.25",
        )


def _annotate_recommended(ax: Axes, results: Results) -> None:
    chosen = next((c for c in results.candidates if c.index == results.recommended), None)
    if chosen is None or not math.isfinite(chosen.metric):
        change = "drop" if Metric(results.metric_name).higher_is_better else "increase"
        text = f"no candidate within the allowed {change} of {results.max_metric_drop:g}"
        ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=9, color="C3")
        return
    ax.scatter(
        [chosen.parameters],
        [chosen.metric],
        s=260,
        facecolors="none",
        edgecolors="C2",
        linewidths=2.2,
        zorder=5,
    )
    text = (
        f"recommended: {threshold_label(chosen.threshold)}\n"
        f"{results.metric_name} {chosen.metric:.4g}, {chosen.size_reduction:.0%} fewer parameters"
    )
    ax.annotate(
        text,
        (chosen.parameters, chosen.metric),
        xytext=(0.35, 0.25),
        textcoords="axes fraction",
        fontsize=9,
        color="C2",
        arrowprops={"arrowstyle": "->", "color": "C2"},
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "C2"},
    )
