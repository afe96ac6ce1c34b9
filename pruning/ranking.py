"""The `reconstruction` criterion: rank neurons by the error their removal leaves in the
next layer's output after linear compensation, greedily, comparable across groups.

For a consumer with weight columns W (rows = output units x kernel or block positions) that
reads channels with covariance Σ, removing channel j and compensating the rest optimally
(`pruning.compensation`) leaves the output error

    cost_j = ||W[:, j]||² / [Σ⁻¹]_jj        (Optimal Brain Surgeon, structured)

and both W and Σ⁻¹ are updated in closed form for the next removal: a channel whose signal
the others carry costs nothing, and once its twin is gone, the twin becomes expensive. The
greedy order is that of the group's removals; each removal's cost is made relative to the
consumers' output variance (tr W Σ Wᵀ, "the share of the next layer's signal lost") and
divided by the parameters it saves, so one ranking across groups buys the most parameters
per unit of error. Groups without co-moments (wider than the Gram limit) use the diagonal
of the same formula, var_j ||W[:, j]||² (FLAP's fluctuation score), in the same units.

The costs of a convolution assume that the residual of a channel is uncorrelated across
kernel positions; that makes them approximate, and the evaluation of each candidate, not
the ranking, is what the results report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import fx

from pruning.compensation import RIDGE
from pruning.criteria import Ranking
from pruning.graph import ChannelGroup, Consumer, GraphAnalysis, Tap, get_tensor
from pruning.stats import RunningStats
from pruning.surgery import oriented_weight

# Greedy steps per group: wider groups remove several channels per step (a block update).
# Each step rewrites the (C, C) inverse, so the steps are also bounded by STEP_BUDGET / C²
# element updates (a 3,072-wide group takes 110 steps of 28 channels), at least MIN_STEPS.
MAX_STEPS = 256
MIN_STEPS = 32
STEP_BUDGET = 2**30


def reconstruction_rankings(
    gm: fx.GraphModule,
    analysis: GraphAnalysis,
    tap_stats: Mapping[Tap, RunningStats],
    check: Callable[[], None] = lambda: None,
) -> dict[str, Ranking]:
    """A ranking per prunable group, in graph order.

    Args:
        gm: the unlifted module (its consumers' weights are read, not changed).
        analysis: its channel groups.
        tap_stats: statistics per tap, with co-moments where they were accumulated.
        check: called between greedy steps (cancellation: it may raise).
    """
    return {g.name: _rank_group(gm, g, tap_stats, check) for g in analysis.prunable}


def _rank_group(
    gm: fx.GraphModule,
    group: ChannelGroup,
    tap_stats: Mapping[Tap, RunningStats],
    check: Callable[[], None],
) -> Ranking:
    per_channel = _parameters_per_channel(gm, group)
    readers = []  # (W (rows, C), Σ (C, C) or None: diagonal only, stats, normaliser)
    for tap in group.taps:
        stats = tap_stats[tap]
        consumers = [c for c in group.consumers if c.tap == tap]
        w = torch.cat([_columns(gm, c, group.width) for c in consumers])
        # A grouped conv keeps mean folding (see surgery): its cost is the diagonal one.
        linear = stats.comoment is not None and all(c.groups == 1 for c in consumers)
        # About each position's mean where a channel is a block (a head): compensation folds
        # those means per position, so only the spread about them is lost.
        cov = stats.within_covariance if linear else torch.diag(stats.std**2)
        energy = float(((w @ cov) * w).sum())
        if energy > 0.0:  # a reader that sees no variation loses nothing, whatever goes
            readers.append((w, cov if linear else None, stats, energy))
    if not readers:  # every channel is constant where it is read: mean folding is exact
        return Ranking.from_scores(torch.zeros(group.width, dtype=torch.float64))
    if all(cov is None for _, cov, _, _ in readers):
        return _diagonal(group.width, readers, per_channel)
    return _greedy(group.width, readers, per_channel, check)


def _columns(gm: fx.GraphModule, consumer: Consumer, width: int) -> torch.Tensor:
    """A consumer's weight columns of the group's channels as (rows, C), float64."""
    weight = oriented_weight(get_tensor(gm, consumer.weight.path).detach(), consumer)
    at = torch.tensor(consumer.weight.span.positions(range(width)), device=weight.device)
    cols = weight[:, at].to(torch.float64).cpu()
    cols = cols.reshape(weight.shape[0], width, -1)  # (out, C, positions)
    return cols.permute(0, 2, 1).reshape(-1, width)  # (out * positions, C)


def _parameters_per_channel(gm: fx.GraphModule, group: ChannelGroup) -> float:
    """Parameters one channel takes: producer rows, per-channel tensors, consumer columns."""
    total = 0
    for ps in (*group.producers, *group.channel_params):
        t = get_tensor(gm, ps.path)
        total += t.numel() // max(int(t.shape[ps.span.dim]), 1) * ps.span.block
    for c in group.consumers:
        t = get_tensor(gm, c.weight.path)
        # A grouped conv's input channel is read by the rows of its own conv group only.
        total += (
            t.numel() // max(int(t.shape[c.weight.span.dim]) * c.groups, 1) * c.weight.span.block
        )
    return float(max(total, 1))


def _diagonal(
    width: int,
    readers: list[tuple[torch.Tensor, torch.Tensor | None, RunningStats, float]],
    per_channel: float,
) -> Ranking:
    cost = torch.zeros(width, dtype=torch.float64)
    for w, _, stats, energy in readers:
        cost += (w**2).sum(dim=0) * stats.std**2 / max(energy, 1e-300)
    return _monotone(Ranking.from_scores(cost / per_channel))


def _greedy(
    width: int,
    readers: list[tuple[torch.Tensor, torch.Tensor | None, RunningStats, float]],
    per_channel: float,
    check: Callable[[], None],
) -> Ranking:
    state = []
    for w, cov, stats, energy in readers:
        if cov is None:
            cov = torch.diag(stats.std**2)
        scale = float(cov.diagonal().mean())
        h = cov + max(RIDGE * scale, 1e-12) * torch.eye(width, dtype=torch.float64)
        state.append([_compact(w), torch.linalg.inv(h), max(energy, 1e-300)])
    alive = torch.ones(width, dtype=torch.bool)
    steps = min(MAX_STEPS, max(MIN_STEPS, STEP_BUDGET // (width * width)))
    step = max(1, math.ceil((width - 1) / steps))
    order: list[int] = []
    costs: list[float] = []
    while len(order) < width - 1:
        check()
        cost = torch.zeros(width, dtype=torch.float64)
        for w, hinv, energy in state:
            diag = hinv.diagonal().clamp_min(1e-300)
            cost += (w**2).sum(dim=0) / diag / energy
        cost = torch.where(alive, cost / per_channel, torch.inf)
        take = min(step, width - 1 - len(order))
        chosen = torch.topk(cost, take, largest=False).indices  # cheapest first
        for j in chosen.tolist():
            order.append(j)
            costs.append(float(cost[j]))
        alive[chosen] = False
        for entry in state:
            entry[0], entry[1] = _remove(entry[0], entry[1], chosen)
    return _monotone(Ranking(width, order, costs))


def _compact(w: torch.Tensor) -> torch.Tensor:
    """A (C, C) stand-in for a tall W (rows > C, as a convolution's columns over its kernel
    positions are): R of W = QR. The greedy steps only read column norms and multiply on
    the right, and Q keeps both (‖W x‖ = ‖R x‖), so every step then costs C² instead of
    rows × C: a 3x3 convolution's consumer is nine times cheaper to rank."""
    if w.shape[0] <= w.shape[1]:
        return w.clone()
    r: torch.Tensor = torch.linalg.qr(w, mode="r").R
    return r


def _remove(
    w: torch.Tensor, hinv: torch.Tensor, gone: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove channels `gone` with optimal compensation: W and Σ⁻¹ after the block update."""
    h_s = hinv.index_select(0, gone)  # (S, C)
    solved = torch.linalg.solve(h_s.index_select(1, gone), h_s)  # (S, C)
    w.addmm_(w.index_select(1, gone), solved, alpha=-1.0)  # in place: (C, C) is large
    hinv.addmm_(h_s.T, solved, alpha=-1.0)
    w[:, gone] = 0.0
    hinv[gone] = 0.0
    hinv[:, gone] = 0.0
    hinv[gone, gone] = 1.0  # keeps the diagonal positive; these channels are out of play
    return w, hinv


def _monotone(r: Ranking) -> Ranking:
    """Costs made non-decreasing along the order (a running maximum), so that one global
    sort takes each group's removals in its own order."""
    out: list[float] = []
    top = -math.inf
    for c in r.cost:
        top = max(top, c)
        out.append(top)
    return Ranking(r.width, r.order, out)
