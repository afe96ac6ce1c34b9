"""The HTML report's charts, as inline SVG: a metric against a cost (parameters, latency)
with labelled points, and the per-layer distribution of the neurons' statistics.

Every point and box carries a tooltip (an SVG <title>: hover shows it, no script needed).
Point labels are placed by `pruning.report.label_placement`, so none overlaps another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from pruning.report.label_placement import Anchor, Box, place_labels
from pruning.report.svg_canvas import FONT_PX, Scale, Svg, text_size, tick_label

WIDTH: Final = 760.0
# role -> (fill, radius): the baseline, any candidate, one on the Pareto front, the choice
_MARKS: Final = {
    "baseline": ("#222222", 5.0),
    "candidate": ("#9a9a9a", 3.5),
    "front": ("#1f63b5", 4.0),
    "recommended": ("#e07000", 5.5),
}


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # drawn beside the point: "#3", "baseline"
    tooltip: str
    role: str  # a key of _MARKS


def tradeoff_chart(
    points: Sequence[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    budget_y: float | None = None,
    log_x: bool = False,
) -> str:
    """A scatter of `points` (metric on y), the Pareto front joined by a line, the budget as
    a dashed line, every point labelled; the SVG's markup."""
    left, top, plot_w, plot_h = 70.0, 28.0, 480.0, 300.0
    plot = Box(left, top, plot_w, plot_h)
    ys = [p.y for p in points] + ([budget_y] if budget_y is not None else [])
    xs = Scale.fitting([p.x for p in points], left, left + plot_w, log=log_x)
    ys_scale = Scale.fitting(ys, top + plot_h, top)
    svg = Svg(WIDTH, top + plot_h + 48, title)
    svg.text(left, 16, title, font_weight="bold")
    _axes(svg, plot, xs, ys_scale, x_label, y_label)
    if budget_y is not None:
        y = ys_scale(budget_y)
        svg.element(
            "line",
            title=f"budget: {y_label} {tick_label(budget_y, False)}",
            x1=left,
            x2=left + plot_w,
            y1=y,
            y2=y,
            stroke="#c03030",
            stroke_dasharray="5 4",
        )
    front = sorted((p for p in points if p.role in ("front", "recommended")), key=lambda p: p.x)
    if len(front) > 1:
        coords = " ".join(f"{xs(p.x):.1f},{ys_scale(p.y):.1f}" for p in front)
        svg.element("polyline", points=coords, fill="none", stroke="#1f63b5", stroke_width=1.2)
    anchors = _merged_anchors(points, xs, ys_scale)
    placed = place_labels(anchors, plot, gutter_x=plot.right + 12)
    for p in sorted(points, key=lambda p: list(_MARKS).index(p.role)):  # the choice on top
        fill, radius = _MARKS[p.role]
        svg.element("circle", title=p.tooltip, cx=xs(p.x), cy=ys_scale(p.y), r=radius, fill=fill)
    for label in placed:
        box, a = label.box, label.anchor
        if label.leader:
            svg.element(
                "line", x1=a.x, y1=a.y, x2=box.x - 2, y2=box.y + box.height / 2, stroke="#bbbbbb"
            )
        svg.text(box.x, box.y + box.height / 2, a.text, dominant_baseline="central")
    # The gutter may run below or right of the plot: the drawing grows to hold every label.
    svg.height = max(svg.height, max((p.box.bottom for p in placed), default=0) + 4)
    svg.width = max(svg.width, max((p.box.right for p in placed), default=0) + 4)
    return svg.render()


def _merged_anchors(points: Sequence[Point], xs: Scale, ys: Scale) -> list[Anchor]:
    """One label per drawn position: candidates at the same spot share it (`#0,#2`)."""
    spots: dict[tuple[float, float], list[str]] = {}
    for p in points:
        spots.setdefault((round(xs(p.x), 1), round(ys(p.y), 1)), []).append(p.label)
    return [Anchor(x, y, ",".join(labels)) for (x, y), labels in spots.items()]


def _axes(svg: Svg, plot: Box, xs: Scale, ys: Scale, x_label: str, y_label: str) -> None:
    w, h = plot.width, plot.height
    svg.element("rect", x=plot.x, y=plot.y, width=w, height=h, fill="none", stroke="#999999")
    for t in xs.ticks():
        x = xs(t)
        svg.element("line", x1=x, x2=x, y1=plot.y, y2=plot.bottom, stroke="#eeeeee")
        svg.text(x, plot.bottom + 14, tick_label(t, xs.log), text_anchor="middle")
    for t in ys.ticks():
        y = ys(t)
        svg.element("line", x1=plot.x, x2=plot.right, y1=y, y2=y, stroke="#eeeeee")
        svg.text(
            plot.x - 5, y, tick_label(t, False), text_anchor="end", dominant_baseline="central"
        )
    svg.text(plot.x + plot.width / 2, plot.bottom + 32, x_label, text_anchor="middle")
    mid = plot.y + plot.height / 2
    svg.text(14, mid, y_label, text_anchor="middle", transform=f"rotate(-90 14 {mid:.1f})")


@dataclass(frozen=True)
class Distribution:
    """One layer's values of one statistic, summarised for a box plot."""

    quantiles: tuple[float, float, float, float, float]  # min, q1, median, q3, max
    zeros: int  # exactly zero (off a log axis)

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Distribution:
        finite = np.array([v for v in values if v is not None and math.isfinite(v)], float)
        positive = finite[finite > 0]
        if positive.size == 0:
            return cls((0.0, 0.0, 0.0, 0.0, 0.0), int((finite == 0).sum()))
        q = np.quantile(positive, [0.0, 0.25, 0.5, 0.75, 1.0])
        return cls(
            (float(q[0]), float(q[1]), float(q[2]), float(q[3]), float(q[4])),
            int((finite == 0).sum()),
        )


NAME_CHARS: Final = 24  # a layer name longer than this is cut in the chart (whole in its tip)
ROW_PX: Final = 18.0  # one layer's row: above the text height, so names never overlap


def stats_chart(
    layers: Sequence[tuple[str, dict[str, Distribution]]],
    lines: dict[str, list[float]],
) -> str:
    """Per layer, one box plot per statistic (log axis, one per statistic shared by all
    layers); `lines`: threshold values to mark on a statistic's axis. The SVG's markup."""
    stats = list(layers[0][1]) if layers else []
    names_w = text_size("x" * NAME_CHARS)[0] + 10
    panel_w = (WIDTH - names_w - 20 * len(stats)) / max(len(stats), 1)
    top = 58.0
    height = top + ROW_PX * len(layers) + 10
    svg = Svg(WIDTH, height, "statistics per layer")
    title = "per-neuron statistics by layer (log axis; box: quartiles; whiskers: range)"
    svg.text(0, 14, title, font_weight="bold")
    for s, stat in enumerate(stats):
        x0 = names_w + s * (panel_w + 20)
        values = [v for _, d in layers for v in d[stat].quantiles if v > 0]
        values += [v for v in lines.get(stat, []) if v > 0]
        scale = Scale.fitting(values or [1.0], x0, x0 + panel_w, log=True, pad=0.04)
        svg.text(x0 + panel_w / 2, 34, stat, text_anchor="middle", font_weight="bold")
        for t in scale.ticks():
            x = scale(t)
            svg.element("line", x1=x, x2=x, y1=top - 4, y2=height - 8, stroke="#eeeeee")
            svg.text(x, top - 6, tick_label(t, True), text_anchor="middle", fill="#666666")
        for t in lines.get(stat, []):
            if t > 0:
                svg.element(
                    "line",
                    title=f"threshold {stat} < {t:g}",
                    x1=scale(t),
                    x2=scale(t),
                    y1=top - 4,
                    y2=height - 8,
                    stroke="#c03030",
                    stroke_dasharray="4 3",
                )
        for row, (name, dists) in enumerate(layers):
            _box(svg, scale, top + row * ROW_PX + ROW_PX / 2, name, stat, dists[stat])
    for row, (name, _) in enumerate(layers):
        shown = name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
        svg.text(0, top + row * ROW_PX + ROW_PX / 2, shown, title=name, dominant_baseline="central")
    return svg.render()


def _box(svg: Svg, scale: Scale, y: float, name: str, stat: str, d: Distribution) -> None:
    lo, q1, med, q3, hi = d.quantiles
    tip = (
        f"{name} {stat}: min {lo:.3g}, quartiles {q1:.3g} / {med:.3g} / {q3:.3g}, max {hi:.3g}"
        f" (of the non-zero); {d.zeros} exactly zero"
    )
    if hi <= 0:  # every value zero (or missing): a mark at the axis' start
        svg.text(scale.start, y, "all zero", title=tip, dominant_baseline="central", fill="#c03030")
        return
    half = FONT_PX * 0.45
    svg.element("line", x1=scale(lo), x2=scale(hi), y1=y, y2=y, stroke="#555555")
    width = max(scale(q3) - scale(q1), 1.0)
    svg.element(
        "rect",
        title=tip,
        x=scale(q1),
        y=y - half,
        width=width,
        height=2 * half,
        fill="#cfe0f5",
        stroke="#1f63b5",
    )
    svg.element("line", x1=scale(med), x2=scale(med), y1=y - half, y2=y + half, stroke="#111111")
    if d.zeros:
        svg.element("circle", title=tip, cx=scale.start + 3, cy=y, r=2.5, fill="#c03030")
