"""Budget search: the largest fraction of neurons whose candidate stays within the budget.

Bisection over the global fraction in [0, 1): a probe within `max_metric_drop` raises the
lower bound, one past it lowers the upper bound, until they are `RESOLUTION` apart. That
takes ceil(log2(1 / RESOLUTION)) = 6 evaluations, each a full candidate (compensated, and
recovered when recovery is on), all published. It assumes that cutting more never helps the
metric; where that is not so on the evaluation data, the search still returns a candidate
within budget (the last one that was), only perhaps not the largest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pruning.results import Candidate

RESOLUTION = 1 / 64
PROBES = math.ceil(math.log2(1 / RESOLUTION))


def bisect(
    probe: Callable[[int, float], Candidate], within: Callable[[Candidate], bool]
) -> list[Candidate]:
    """Probe fractions by bisection; returns every probe, in the order made.

    Args:
        probe: (index, fraction) -> the evaluated candidate.
        within: whether a candidate stays within the budget.
    """
    lo, hi = 0.0, 1.0
    out: list[Candidate] = []
    for _ in range(PROBES):
        fraction = (lo + hi) / 2
        candidate = probe(len(out), fraction)
        out.append(candidate)
        if within(candidate):
            lo = fraction
        else:
            hi = fraction
    return out
