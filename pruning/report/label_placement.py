"""Where a chart's point labels go so that no two overlap, whatever the points.

Deterministic and greedy: labels are taken in order of their point's height (then x), and
each takes the first of a fixed list of spots around its point (right, left, above, below,
then the diagonals, then the same further out) whose box stays inside the plot and meets
no label already placed and no point marker. A label with no free spot goes to the gutter,
a column right of the plot, stacked one text height apart, with a leader line back to its
point. Gutter boxes lie outside the plot, so they cannot meet the boxes placed inside it,
and they are stacked, so they cannot meet one another: no two labels ever intersect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pruning.report.svg_canvas import FONT_PX, text_size

GAP: Final = 3.0  # px between a marker and its label, and between stacked labels
MARKER_PX: Final = 4.0  # a point marker's radius: labels keep off every marker


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle: top-left corner and size, in px."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    def intersects(self, other: Box) -> bool:
        """True when the two boxes share interior area (touching edges do not count)."""
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )

    def inside(self, other: Box) -> bool:
        return (
            self.x >= other.x
            and self.y >= other.y
            and self.right <= other.right
            and self.bottom <= other.bottom
        )


@dataclass(frozen=True)
class Anchor:
    """A labelled point, in px."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Placed:
    """Where one anchor's label went; `leader`: draw a line from the point to the label."""

    anchor: Anchor
    box: Box
    leader: bool


def _spots(a: Anchor, width: float, height: float) -> list[tuple[float, float]]:
    """Top-left corners to try for a label of this size, nearest first."""
    spots = []
    for reach in (1.0, 2.5, 4.5):
        d = (MARKER_PX + GAP) * reach
        spots += [
            (a.x + d, a.y - height / 2),  # right
            (a.x - d - width, a.y - height / 2),  # left
            (a.x - width / 2, a.y - d - height),  # above
            (a.x - width / 2, a.y + d),  # below
            (a.x + d, a.y - d - height),  # upper right
            (a.x + d, a.y + d),  # lower right
            (a.x - d - width, a.y + d),  # lower left
            (a.x - d - width, a.y - d - height),  # upper left
        ]
    return spots


def place_labels(
    anchors: list[Anchor], plot: Box, gutter_x: float, font_px: float = FONT_PX
) -> list[Placed]:
    """Place every anchor's label inside `plot`, or in the gutter starting at `gutter_x`
    (which must lie at or right of `plot.right`).

    Returns:
        One `Placed` per anchor, in the order of `anchors`. The gutter may run below the
        plot: the caller sizes its drawing to the lowest box.
    """
    markers = [Box(a.x - MARKER_PX, a.y - MARKER_PX, 2 * MARKER_PX, 2 * MARKER_PX) for a in anchors]
    order = sorted(range(len(anchors)), key=lambda i: (anchors[i].y, anchors[i].x, i))
    placed: dict[int, Placed] = {}
    boxes: list[Box] = []
    overflow: list[int] = []
    for i in order:
        a = anchors[i]
        width, height = text_size(a.text, font_px)
        box = next(
            (
                b
                for x, y in _spots(a, width, height)
                for b in (Box(x, y, width, height),)
                if b.inside(plot)
                and not any(b.intersects(o) for o in boxes)
                and not any(b.intersects(m) for m in markers)
            ),
            None,
        )
        if box is None:
            overflow.append(i)
        else:
            boxes.append(box)
            placed[i] = Placed(a, box, leader=False)
    bottom = plot.y - GAP
    for i in overflow:  # already in order of height: stacking keeps them near their points
        a = anchors[i]
        width, height = text_size(a.text, font_px)
        top = max(a.y - height / 2, bottom + GAP)
        placed[i] = Placed(a, Box(gutter_x, top, width, height), leader=True)
        bottom = top + height
    return [placed[i] for i in range(len(anchors))]
