"""The statistics plot (`stats.png`): each layer's neurons, |mean| against std, coloured by
their fraction of zero activations, with the sweep's absolute thresholds drawn over them.

A seed threshold is a box (|mean| < t_mean and std < t_std), a variance one a line (std < t);
fraction thresholds rank neurons across all layers and have no line, so the title names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from jobs.job_config import Criterion
from pruning.report.figures import save_png
from pruning.report.labels import threshold_label
from pruning.results import LayerStats

MAX_PANELS: Final = 32  # a figure with more layers than this draws the first ones and says so
# The criteria whose absolute thresholds bound |mean| and std, so can be drawn over the points.
_MEAN_STD_CRITERIA: Final = (Criterion.SEED, Criterion.VARIANCE)


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
    drawable = [_drawable(t, criterion) for t in thresholds]
    title = _stats_title(layers, thresholds, drawable, criterion)
    grid = _Grid(rows, cols, title.count("\n") + 1, legend=any(drawable))
    fig = Figure(figsize=(grid.width, grid.height))
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=grid.spacing()).ravel()
    colours = [f"C{i % 10}" for i in range(len(thresholds))]
    points = None
    for ax, stats in zip(axes, shown, strict=False):
        points = _stats_panel(ax, stats, thresholds, drawable, colours)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    if not shown:
        axes[0].text(0.5, 0.5, "no prunable layers", ha="center", va="center")
    if points is not None:
        cax = fig.add_axes(grid.colorbar_box())
        fig.colorbar(points, cax=cax, label="fraction of zero activations")
    _threshold_legend(fig, thresholds, drawable, colours)
    fig.suptitle(title, y=1 - _Grid.EDGE / grid.height, va="top")
    return save_png(fig, path)


@dataclass(frozen=True)
class _Grid:
    """The panels' layout in inches, fixed: a layout engine (constrained, tight) measures
    every label of every panel and draws the figure twice, which cost more than the rest."""

    rows: int
    cols: int
    title_lines: int
    legend: bool
    PANEL_W: ClassVar[float] = 2.75
    PANEL_H: ClassVar[float] = 2.1
    GAP_W: ClassVar[float] = 0.9  # the next panel's y tick labels and y label
    GAP_H: ClassVar[float] = 0.85  # the x tick labels and x label, the next panel's title
    LEFT: ClassVar[float] = 0.85
    RIGHT: ClassVar[float] = 1.25  # the colour bar and its label
    EDGE: ClassVar[float] = 0.1

    @property
    def top(self) -> float:
        return self.EDGE + 0.25 * self.title_lines + 0.35  # the title, then the first titles

    @property
    def bottom(self) -> float:
        return 0.6 + (0.75 if self.legend else 0.0)  # x labels; the thresholds' legend

    @property
    def width(self) -> float:
        return self.LEFT + self.cols * self.PANEL_W + (self.cols - 1) * self.GAP_W + self.RIGHT

    @property
    def height(self) -> float:
        return self.top + self.rows * self.PANEL_H + (self.rows - 1) * self.GAP_H + self.bottom

    def spacing(self) -> dict[str, float]:
        """`GridSpec` arguments: figure fractions, and gaps as fractions of a panel."""
        return {
            "left": self.LEFT / self.width,
            "right": 1 - self.RIGHT / self.width,
            "top": 1 - self.top / self.height,
            "bottom": self.bottom / self.height,
            "wspace": self.GAP_W / self.PANEL_W,
            "hspace": self.GAP_H / self.PANEL_H,
        }

    def colorbar_box(self) -> tuple[float, float, float, float]:
        """(left, bottom, width, height) of the colour bar, in figure fractions."""
        panels = self.height - self.top - self.bottom
        return (
            1 - (self.RIGHT - 0.3) / self.width,
            (self.bottom + 0.1 * panels) / self.height,
            0.18 / self.width,
            0.8 * panels / self.height,
        )


def _threshold_legend(
    fig: Figure, thresholds: list[dict[str, float]], drawable: list[bool], colours: list[str]
) -> None:
    handles = [
        _threshold_handle(t, c) for t, c, d in zip(thresholds, colours, drawable, strict=True) if d
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncols=min(6, len(handles)),
            title="thresholds: neurons inside the box (seed) or below the line (variance) go",
        )


def _threshold_handle(threshold: dict[str, float], colour: str) -> Artist:
    label = threshold_label(threshold)
    if "mean" in threshold:
        return Patch(facecolor=to_rgba(colour, 0.08), edgecolor=colour, linewidth=1.6, label=label)
    return Line2D([], [], color=colour, linewidth=1.6, linestyle="--", label=label)


def _drawable(threshold: dict[str, float], criterion: str) -> bool:
    return "fraction" not in threshold and criterion in _MEAN_STD_CRITERIA and "std" in threshold


def _stats_title(
    layers: list[LayerStats], thresholds: list[dict[str, float]], drawable: list[bool], crit: str
) -> str:
    title = f"Neuron activations per layer (criterion {crit})"
    hidden = [threshold_label(t) for t, d in zip(thresholds, drawable, strict=True) if not d]
    if hidden:
        why = (
            "fractions pick neurons by rank across all layers"
            if crit in _MEAN_STD_CRITERIA
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
    # Placed, not fitted: fitting the title and labels around the tick labels measures
    # every tick label of the panel once more.
    ax.set_title(f"{stats.name} ({stats.neurons} neurons{dead})", fontsize=10, y=1.0, pad=6)
    ax.set_xlabel("|mean| of activation")
    ax.set_ylabel("std of activation")
    ax.xaxis.set_label_coords(0.5, -0.15)
    ax.yaxis.set_label_coords(-0.24, 0.5)
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


def _scale(set_scale: Callable[..., Any], values: np.ndarray) -> None:
    """Linear, unless the values span more than two decades: then symlog, so that the zeros
    of dead neurons stay on the plot next to values orders of magnitude larger."""
    positive = values[values > 0]
    if positive.size and positive.max() > 100 * positive.min():
        # Linear below a round power of ten (and never more than six decades of log scale).
        smallest = max(float(positive.min()), float(positive.max()) * 1e-6)
        set_scale("symlog", linthresh=10.0 ** math.floor(math.log10(smallest)), linscale=1.0)
