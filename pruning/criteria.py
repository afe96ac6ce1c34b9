"""Which neurons go: importance scores per criterion, and thresholds turned into a plan.

A plan is data: group name -> indices of the neurons kept, ascending. It can be saved,
shown and replayed by `pruning.surgery.apply_plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from pruning.config import Criterion, Threshold
from pruning.stats import RunningStats

Plan = dict[str, list[int]]


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt()) if t.numel() else 0.0


def _relative(t: torch.Tensor) -> torch.Tensor:
    """Scale a layer's values by their RMS, so scores of differently scaled layers compare."""
    scale = _rms(t)
    return t / scale if scale > 0 else torch.zeros_like(t)


def seed_score(s: RunningStats) -> torch.Tensor:
    """Small only when both |mean| and std are small (the seed recipe), layer-relative."""
    return torch.maximum(_relative(s.mean.abs()), _relative(s.std))


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
        return low_std & (s.mean.abs() < t.mean)
    return low_std


def select(
    criterion: Criterion,
    stats: Mapping[str, RunningStats],
    threshold: Threshold,
    parts: Mapping[str, int] | None = None,
) -> Plan:
    """Turn a threshold into a plan over the given groups; no group is ever emptied.

    Args:
        criterion: the importance criterion.
        stats: group name -> statistics of its neurons, in graph order.
        threshold: absolute ({mean, std} / {std}) or relative ({fraction}).
        parts: group name -> number of equal runs that must keep equal counts (grouped
            convolutions); groups not named have one.

    Returns:
        group name -> kept neuron indices (ascending), for every group in `stats`.
    """
    if threshold.fraction is not None:
        plan = _select_fraction(criterion, stats, threshold.fraction)
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
            plan[name] = equal_parts(plan[name], SCORES[criterion](stats[name]), p)
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


def _select_fraction(
    criterion: Criterion, stats: Mapping[str, RunningStats], fraction: float
) -> Plan:
    names = list(stats)
    scores = [SCORES[criterion](stats[n]) for n in names]
    total = sum(int(s.numel()) for s in scores)
    budget = round(fraction * total)
    owner = torch.cat([torch.full((s.numel(),), i, dtype=torch.long) for i, s in enumerate(scores)])
    index = torch.cat([torch.arange(s.numel()) for s in scores])
    flat = torch.cat(scores)
    # Stable sort: ties go in graph order, so a plan is reproducible.
    order = torch.sort(flat, stable=True).indices.tolist()
    remaining = [int(s.numel()) for s in scores]
    dropped: list[set[int]] = [set() for _ in names]
    for k in order:
        if budget <= 0:
            break
        g = int(owner[k])
        if remaining[g] <= 1:
            continue
        dropped[g].add(int(index[k]))
        remaining[g] -= 1
        budget -= 1
    return {
        n: [j for j in range(int(scores[i].numel())) if j not in dropped[i]]
        for i, n in enumerate(names)
    }
