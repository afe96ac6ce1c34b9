"""What every published plot shares: a matplotlib `Figure` saved as PNG, atomically.

Plots use matplotlib's object API (`Figure` + the Agg canvas), never pyplot, so there is no
global figure state and workers may draw from several threads. Files are written through
`pruning.report.files.write_atomic`: a reader never sees half a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pruning.report.files import write_atomic

DPI: Final = 110


def save_png(fig: Figure, path: Path) -> Path:
    """Render `fig` as a PNG at `path`; returns `path`."""
    FigureCanvasAgg(fig)  # attach the Agg canvas: no pyplot, no global state
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
