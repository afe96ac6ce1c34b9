"""The drawing primitives of the HTML report's charts: an SVG element list with every text and
attribute escaped, axis scales with round ticks, and numbers in a short form.

The charts are inline SVG drawn by this code, not a plotting library's output: they stay
crisp at any zoom, need no script and no external file, and their text is real text.
Labels use a monospace font so their width can be estimated from their length
(`TEXT_WIDTH_EM`), which the label placement (`pruning.report.label_placement`) relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Final

FONT_PX: Final = 11
# A monospace glyph is about 0.6 em wide in the common fonts (DejaVu Sans Mono, Consolas,
# Menlo, Courier); a little more keeps the estimate an upper bound.
TEXT_WIDTH_EM: Final = 0.64
LINE_EM: Final = 1.3  # a label's box height, in em: the glyphs and a little air
FONT_FAMILY: Final = "ui-monospace, Menlo, Consolas, 'DejaVu Sans Mono', monospace"


def text_size(text: str, font_px: float = FONT_PX) -> tuple[float, float]:
    """An upper estimate of the (width, height) in px that `text` takes in the charts' font."""
    return len(text) * font_px * TEXT_WIDTH_EM, font_px * LINE_EM


def short_number(value: float) -> str:
    """`1.2M`, `35.1k`, `0.967`, `1.5e-05`: a tick or a tooltip's number, at most 7 chars."""
    if not math.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


@dataclass(frozen=True)
class Scale:
    """Maps a data interval onto a pixel interval, linearly or (`log`) by log10."""

    low: float
    high: float
    start: float  # px of `low`
    end: float  # px of `high` (smaller than `start` for a y axis, which grows upwards)
    log: bool = False

    @classmethod
    def fitting(
        cls, values: list[float], start: float, end: float, log: bool = False, pad: float = 0.06
    ) -> Scale:
        """A scale over `values` with `pad` of the range added on both sides."""
        if log:
            logs = [math.log10(v) for v in values if v > 0] or [0.0]
            low, high = min(logs), max(logs)
            spread = max(high - low, 0.5)
            return cls(low - pad * spread, high + pad * spread, start, end, log=True)
        low, high = min(values), max(values)
        spread = high - low or (abs(high) or 1.0) * 0.1
        return cls(low - pad * spread, high + pad * spread, start, end)

    def __call__(self, value: float) -> float:
        if self.log:
            value = math.log10(value) if value > 0 else self.low
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        """Round values inside the scale, in data units: for a log scale, powers of ten, as
        many as fit with their labels (`tick_label`) side by side on a horizontal axis."""
        if self.log:
            decades = list(range(math.ceil(self.low), math.floor(self.high) + 1))
            per_decade = abs(self.end - self.start) / (self.high - self.low)
            widest = max((text_size(tick_label(10.0**e, True))[0] for e in decades), default=0)
            step = max(1, math.ceil((widest + 8) / per_decade))
            return [10.0**e for e in decades if e % step == 0]
        return [t for t in nice_ticks(self.low, self.high, count) if self.low <= t <= self.high]


def tick_label(value: float, log: bool) -> str:
    """A tick's text: powers of ten as `1e-3` on a log axis, else `short_number`."""
    if log and value > 0:
        exponent = round(math.log10(value))
        return f"{value:g}" if -2 <= exponent <= 3 else f"1e{exponent}"
    return short_number(value)


def _attrs(attrs: dict[str, object]) -> str:
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        parts.append(f' {key.rstrip("_").replace("_", "-")}="{escape(text, quote=True)}"')
    return "".join(parts)


@dataclass
class Svg:
    """An SVG document built element by element; `render` gives its markup."""

    width: float
    height: float
    label: str  # what the chart shows, for screen readers
    parts: list[str] = field(default_factory=list)

    def element(self, tag: str, title: str | None = None, **attrs: object) -> None:
        """One empty element; `title` becomes its tooltip (an SVG <title> child)."""
        if title is None:
            self.parts.append(f"<{tag}{_attrs(attrs)}/>")
        else:
            self.parts.append(f"<{tag}{_attrs(attrs)}><title>{escape(title)}</title></{tag}>")

    def text(
        self, x: float, y: float, text: str, title: str | None = None, **attrs: object
    ) -> None:
        """Text whose baseline starts at (x, y), unless `text_anchor`/`dominant_baseline` say
        otherwise."""
        tip = "" if title is None else f"<title>{escape(title)}</title>"
        self.parts.append(f"<text{_attrs({'x': x, 'y': y, **attrs})}>{tip}{escape(text)}</text>")

    def render(self) -> str:
        # Inline in HTML: no xmlns needed (the HTML parser puts <svg> in the SVG namespace).
        head = _attrs(
            {
                "viewBox": f"0 0 {self.width:.0f} {self.height:.0f}",
                "width": f"{self.width:.0f}",
                "role": "img",
                "aria-label": self.label,
                "font-family": FONT_FAMILY,
                "font-size": FONT_PX,
            }
        )
        return f"<svg{head}>{''.join(self.parts)}</svg>"
