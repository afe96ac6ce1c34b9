"""The plots a job publishes (PNG): each layer's neuron statistics against the thresholds,
and the sweep's metric against model size.

Plots use matplotlib's object API (`Figure` + the Agg canvas), never pyplot, so there is no
global figure state and workers may draw from several threads. Files are written atomically
through `pruning.report.files.write_atomic`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import EngFormatter

from pruning.choice import higher_is_better
from pruning.report.files import threshold_label, write_atomic
from pruning.results import Candidate, LayerStats, Results

MAX_PANELS: Final = 32  # a figure with more layers than this draws the first ones and says so
_DPI: Final = 110


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # attach the Agg canvas: no pyplot, no global state
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))


def _scale(set_scale: Callable[..., Any], values: np.ndarray) -> None:
    """Linear, unless the values span more than two decades: then symlog, so that the zeros
    of dead neurons stay on the plot next to values orders of magnitude larger."""
    positive = values[values > 0]
    if positive.size and positive.max() > 100 * positive.min():
        # Linear below a round power of ten (and never more than six decades of log scale).
        smallest = max(float(positive.min()), float(positive.max()) * 1e-6)
        set_scale("symlog", linthresh=10.0 ** math.floor(math.log10(smallest)), linscale=1.0)


def plot_stats(
    layers: list[LayerStats], thresholds: list[dict[str, float]], criterion: str, path: Path
) -> Path:
    """Draw each layer's neurons, |mean| against std, with the absolute thresholds.

    `seed` thresholds are the rectangle |mean| < t_mean and std < t_std; `variance` ones the
    line std = t. Fraction thresholds rank neurons across all layers, so they have no line:
    the title lists them instead.

    Returns:
        `path`, a PNG.
    """
    shown = layers[:MAX_PANELS]
    cols = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(3.6 * cols + 1.2, 3.0 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(thresholds))]
    drawable = [_drawable(t, criterion) for t in thresholds]
    points = None
    for ax, stats in zip(axes, shown, strict=False):
        points = _stats_panel(ax, stats, thresholds, drawable, colours)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    if not shown:
        axes[0].text(0.5, 0.5, "no prunable layers", ha="center", va="center")
    if points is not None:
        fig.colorbar(points, ax=list(axes), label="fraction of zero activations", shrink=0.8)
    _threshold_legend(fig, thresholds, drawable, colours)
    fig.suptitle(_stats_title(layers, thresholds, drawable, criterion))
    return _save(fig, path)


def _threshold_legend(
    fig: Figure, thresholds: list[dict[str, float]], drawable: list[bool], colours: list[str]
) -> None:
    handles = [
        _threshold_handle(t, c) for t, c, d in zip(thresholds, colours, drawable, strict=True) if d
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(6, len(handles)),
            title="thresholds: neurons inside the box (seed) or below the line (variance) go",
        )


def _threshold_handle(threshold: dict[str, float], colour: str) -> Artist:
    label = threshold_label(threshold)
    if "mean" in threshold:
        return Patch(facecolor=to_rgba(colour, 0.08), edgecolor=colour, linewidth=1.6, label=label)
    return Line2D([], [], color=colour, linewidth=1.6, linestyle="--", label=label)


def _drawable(threshold: dict[str, float], criterion: str) -> bool:
    return "fraction" not in threshold and criterion in ("seed", "variance") and "std" in threshold


def _stats_title(
    layers: list[LayerStats], thresholds: list[dict[str, float]], drawable: list[bool], crit: str
) -> str:
    title = f"Neuron activations per layer (criterion {crit})"
    hidden = [threshold_label(t) for t, d in zip(thresholds, drawable, strict=True) if not d]
    if hidden:
        why = (
            "fractions pick neurons by rank across all layers"
            if crit in ("seed", "variance")
            else f"criterion {crit} does not threshold |mean| or std"
        )
        title += f"\nnot drawn: {', '.join(hidden)} ({why})"
    if len(layers) > MAX_PANELS:
        title += f"\nfirst {MAX_PANELS} of {len(layers)} layers shown (all in stats.csv)"
    return title


def _stats_panel(
    ax: Axes,
    stats: LayerStats,
    thresholds: list[dict[str, float]],
    drawable: list[bool],
    colours: list[str],
) -> Any:
    x = np.abs(np.asarray(stats.mean, dtype=np.float64))
    y = np.asarray(stats.std, dtype=np.float64)
    size = 14 if stats.neurons <= 256 else 5
    points = ax.scatter(
        x,
        y,
        c=stats.zero_fraction,
        cmap="viridis",
        vmin=0,
        vmax=1,
        s=size,
        alpha=0.8,
        linewidths=0,
        clip_on=False,  # neurons at exactly 0 sit on the axes: draw them whole
        zorder=3,
    )
    drawn = [t for t, d in zip(thresholds, drawable, strict=True) if d]
    _scale(ax.set_xscale, np.concatenate([x, [t["mean"] for t in drawn if "mean" in t]]))
    _scale(ax.set_yscale, np.concatenate([y, [t["std"] for t in drawn]]))
    _draw_thresholds(ax, thresholds, drawable, colours)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    constant = int(np.count_nonzero(y == 0))  # dead ReLUs sit at the origin, easy to miss
    dead = f", {constant} constant" if constant else ""
    ax.set_title(f"{stats.name} ({stats.neurons} neurons{dead})", fontsize=10)
    ax.set_xlabel("|mean| of activation")
    ax.set_ylabel("std of activation")
    ax.grid(True, alpha=0.3)
    return points


def _draw_thresholds(
    ax: Axes, thresholds: list[dict[str, float]], drawable: list[bool], colours: list[str]
) -> None:
    for t, d, colour in zip(thresholds, drawable, colours, strict=True):
        if not d:
            continue
        if "mean" in t:  # seed: removed when |mean| < t_mean and std < t_std
            ax.add_patch(
                Rectangle(
                    (0, 0),
                    t["mean"],
                    t["std"],
                    facecolor=to_rgba(colour, 0.08),
                    edgecolor=colour,
                    linewidth=1.6,
                )
            )
        else:  # variance: removed when std < t
            ax.axhline(t["std"], color=colour, linewidth=1.6, linestyle="--")


def plot_tradeoff(results: Results, path: Path) -> Path:
    """Draw metric against parameters: every candidate, the baseline, the Pareto front, the
    budget line and the recommended candidate.

    Returns:
        `path`, a PNG.
    """
    fig = Figure(figsize=(8.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    up = higher_is_better(results.metric_name)
    drawn = [c for c in results.candidates if math.isfinite(c.metric)]
    _draw_candidates(ax, results, drawn)
    _draw_baseline(ax, results, up)
    _label_points(ax, drawn)
    _annotate_recommended(ax, results)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"{results.metric_name} ({'higher' if up else 'lower'} is better)")
    extras = "" if results.compensate == "none" else f", {results.compensate} compensation"
    if results.recovery is not None:
        extras += ", recovered"
    ax.set_title(f"{results.metric_name} vs. size (criterion {results.criterion}{extras})")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


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
        change = "drop" if higher_is_better(results.metric_name) else "increase"
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
