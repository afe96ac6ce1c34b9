"""Which neurons go: importance per criterion, and thresholds turned into a plan.

Every criterion yields a `Ranking` per group: its neurons in the order they go and the
cost of each removal, comparable across groups. A fraction is then spread across groups by
an `Allocation`: one global ranking (the cheapest removals anywhere) or the same share of
every group. Absolute thresholds (`seed`, `variance`) compare statistics directly.

A plan is data: group name -> indices of the neurons kept, ascending. It can be saved,
shown and replayed by `pruning.surgery.apply_plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from jobs.job_config import Allocation, Criterion
from pruning.config import Threshold
from pruning.graph import Plan
from pruning.stats import RunningStats


@dataclass(frozen=True)
class Ranking:
    """A group's neurons in the order they go, and what each removal costs.

    `order` never holds every neuron (the last one stays); `cost` is non-decreasing along
    it and in units shared by every group, so removals of several groups merge by cost.
    """

    width: int
    order: list[int]
    cost: list[float]

    @classmethod
    def from_scores(cls, scores: torch.Tensor) -> Ranking:
        """Lowest score goes first; ties in channel order (a stable sort: reproducible)."""
        ranked = torch.sort(scores, stable=True)
        order = ranked.indices.tolist()[:-1]
        return cls(int(scores.numel()), order, ranked.values.tolist()[: len(order)])

    def scores(self) -> torch.Tensor:
        """Per channel: the cost at which it goes; +inf for the neuron that always stays."""
        out = torch.full((self.width,), float("inf"), dtype=torch.float64)
        for cost, channel in zip(self.cost, self.order, strict=True):
            out[channel] = cost
        return out


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt()) if t.numel() else 0.0


def _relative(t: torch.Tensor) -> torch.Tensor:
    """Scale a layer's values by their RMS, so scores of differently scaled layers compare."""
    scale = _rms(t)
    return t / scale if scale > 0 else torch.zeros_like(t)


def seed_score(s: RunningStats) -> torch.Tensor:
    """Small only when both |mean| and std are small (the seed recipe), layer-relative.
    A channel read as a block of positions (a head) is near zero only if each position's
    mean is (`mean_magnitude`), and its std is about those means."""
    return torch.maximum(_relative(s.mean_magnitude), _relative(s.std))


def variance_score(s: RunningStats) -> torch.Tensor:
    """Low std alone, layer-relative: the mean is folded into the next layer's bias."""
    return _relative(s.std)


SCORES: dict[Criterion, Callable[[RunningStats], torch.Tensor]] = {
    Criterion.SEED: seed_score,
    Criterion.VARIANCE: variance_score,
}


def _absolute_drop(criterion: Criterion, s: RunningStats, t: Threshold) -> torch.Tensor:
    assert t.std is not None  # guaranteed by Threshold validation
    low_std = s.std < t.std
    if criterion is Criterion.SEED:
        assert t.mean is not None
        return low_std & (s.mean_magnitude < t.mean)
    return low_std


def score_rankings(criterion: Criterion, stats: Mapping[str, RunningStats]) -> dict[str, Ranking]:
    """Rankings of the statistics-only criteria (`seed`, `variance`)."""
    return {name: Ranking.from_scores(SCORES[criterion](s)) for name, s in stats.items()}


def select(
    criterion: Criterion,
    stats: Mapping[str, RunningStats],
    threshold: Threshold,
    parts: Mapping[str, int] | None = None,
    *,
    rankings: Mapping[str, Ranking] | None = None,
    allocation: Allocation = Allocation.GLOBAL,
    neurons: Mapping[str, int] | None = None,
) -> Plan:
    """Turn a threshold into a plan over the given groups; no group is ever emptied.

    Args:
        criterion: the importance criterion.
        stats: group name -> statistics of its neurons, in graph order.
        threshold: absolute ({mean, std} / {std}) or relative ({fraction}).
        parts: group name -> number of equal runs that must keep equal counts (grouped
            convolutions); groups not named have one.
        rankings: group name -> ranking, for fractions; None: from the criterion's scores
            (`seed`, `variance` only).
        allocation: how a fraction is spread across groups.
        neurons: group name -> neurons one unit holds (an attention head: its head_dim
            output features), for the global budget; groups not named have one.

    Returns:
        group name -> kept neuron indices (ascending), for every group in `stats`.
    """
    if rankings is None:
        rankings = score_rankings(criterion, stats)
    if threshold.fraction is not None:
        plan = allocate(rankings, threshold.fraction, allocation, neurons)
    else:
        plan = {}
        for name, s in stats.items():
            drop = _absolute_drop(criterion, s, threshold)
            if bool(drop.all()):
                # Keep the most important neuron so the layer survives.
                drop[int(torch.argmax(SCORES[criterion](s)))] = False
            plan[name] = torch.nonzero(~drop).flatten().tolist()
    for name, p in (parts or {}).items():
        if p > 1 and name in plan:
            plan[name] = equal_parts(plan[name], rankings[name].scores(), p)
    return plan


def equal_parts(kept: list[int], scores: torch.Tensor, parts: int) -> list[int]:
    """Keep as many neurons in each of `parts` equal runs as the fullest run keeps.

    A run that keeps fewer takes back its best-scoring removed neurons: the criterion never
    removes more than it chose, it only removes less where the structure demands it.
    """
    size = int(scores.numel()) // parts
    keep = set(kept)
    count = max(sum(1 for c in range(p * size, (p + 1) * size) if c in keep) for p in range(parts))
    out: list[int] = []
    for p in range(parts):
        run = range(p * size, (p + 1) * size)
        mine = [c for c in run if c in keep]
        back = sorted((c for c in run if c not in keep), key=lambda c: -float(scores[c]))
        out += mine + back[: count - len(mine)]
    return sorted(out)


def allocate(
    rankings: Mapping[str, Ranking],
    fraction: float,
    allocation: Allocation,
    neurons: Mapping[str, int] | None = None,
) -> Plan:
    """Drop `fraction` of all ranked neurons, spread across groups by `allocation`.

    `global`: the cheapest removals anywhere until round(fraction x all neurons) are gone
    (each group's own order kept: costs are non-decreasing along it, and ties go in graph
    order; a unit of several neurons, a head, counts as that many and is skipped where it
    would overshoot); `uniform`: round(fraction x width) units from every group. No group
    loses its last unit.
    """
    drops: dict[str, int]
    if allocation is Allocation.AUTO:
        raise ValueError("allocation 'auto' is resolved by the search, not by a plan")
    if allocation is Allocation.UNIFORM:
        drops = {n: min(round(fraction * r.width), len(r.order)) for n, r in rankings.items()}
    else:
        size = [int((neurons or {}).get(name, 1)) for name in rankings]
        budget = round(
            fraction * sum(r.width * n for r, n in zip(rankings.values(), size, strict=True))
        )
        entries = [(c, g, k) for g, r in enumerate(rankings.values()) for k, c in enumerate(r.cost)]
        entries.sort(key=lambda e: e[0])  # stable: a group's removals stay in their order
        counts = [0] * len(rankings)
        used = 0
        for _, g, k in entries:
            if k != counts[g] or used + size[g] > budget:
                continue  # an earlier unit of this group did not fit: neither do later ones
            counts[g] += 1
            used += size[g]
        drops = dict(zip(rankings, counts, strict=True))
    return {
        name: sorted(set(range(r.width)) - set(r.order[: drops[name]]))
        for name, r in rankings.items()
    }
