"""Streaming per-neuron activation statistics, merged batch by batch in float64.

Every batch contributes its count, mean and sum of squared deviations, merged with Chan's
parallel update, so the result equals `torch.mean`/`torch.std` over all activations whatever
the batch size, without keeping any activation beyond the current batch. Where linear
compensation needs them, the same update runs on the C x C matrix of co-moments (the
centred Gram matrix), from which `gram` = E[x xᵀ] and `covariance` follow. A channel that
spans several positions (`block`) is merged position by position (see `RunningStats`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import fx

from pruning.data import Batch
from pruning.graph import Tap
from pruning.results import LayerStats
from pruning.tap_moments import Scratch, TapMoments
from pruning.tapped import tapped_copy


@dataclass
class RunningStats:
    """Accumulator for one tensor's channels; channels on `channel_dim`, the rest are samples.

    With `block` > 1 a channel is `block` consecutive entries of `channel_dim` (a flattened
    feature map's positions, an attention head's features): `mean` is over all of them, but
    each position keeps its own mean (`position_mean`), and the spread (`m2`, `comoment`,
    `std`) is about each position's mean. A head whose every feature is a constant of its
    own has no spread, and compensation folds each position's mean where it is read.
    """

    channels: int
    channel_dim: int = -1
    count: int = 0  # activations per channel: samples x positions
    track_gram: bool = False  # also accumulate the (C, C) co-moments (linear compensation)
    block: int = 1

    def __post_init__(self) -> None:
        zeros = torch.zeros(self.channels, dtype=torch.float64)
        # Sum over samples of (x - mean)(x - mean)ᵀ, merged like m2 (its diagonal).
        self.comoment: torch.Tensor | None = (
            torch.zeros(self.channels, self.channels, dtype=torch.float64)
            if self.track_gram
            else None
        )
        self.mean = zeros.clone()
        self.m2 = zeros.clone()  # sum of squared deviations from the (position's) mean
        self.abs_sum = zeros.clone()
        self.zeros = zeros.clone()
        self.min = torch.full((self.channels,), float("inf"), dtype=torch.float64)
        self.max = torch.full((self.channels,), float("-inf"), dtype=torch.float64)
        # (C, block): each position's mean, when a channel has several (None for block 1).
        self.position_mean: torch.Tensor | None = (
            torch.zeros(self.channels, self.block, dtype=torch.float64) if self.block > 1 else None
        )

    def update(self, activation: torch.Tensor) -> None:
        """Merge one batch of activations, e.g. (N, C) or (N, T, C) for channel_dim=-1
        ((N, C * block) or (N, T, C * block) with blocks)."""
        a = activation.detach().movedim(self.channel_dim, -1)
        a = a.reshape(-1, self.channels * self.block).to(torch.float64)  # (M, C * block)
        n = a.shape[0]
        if n == 0:
            return
        if self.block > 1:
            self._update_positions(a.view(n, self.channels, self.block))
            return
        batch_mean = a.mean(dim=0)
        centred = a - batch_mean  # (M, C)
        batch_m2 = (centred**2).sum(dim=0)
        total = self.count + n
        delta = batch_mean.cpu() - self.mean
        if self.comoment is not None:
            batch_co = (centred.T @ centred).cpu()  # (C, C)
            self.comoment += batch_co + torch.outer(delta, delta) * (self.count * n / total)
        self.mean += delta * (n / total)
        self.m2 += batch_m2.cpu() + delta**2 * (self.count * n / total)
        self.count = total
        self._add_extremes(a)

    def _update_positions(self, a: torch.Tensor) -> None:
        """`update` for a block: a is (M, C, block); Chan's merge runs at each position (each
        has M new samples), and its terms are summed over the positions."""
        n = a.shape[0] * self.block
        batch_mean = a.mean(dim=0)  # (C, block)
        values = a.transpose(1, 2).reshape(-1, self.channels)  # (M * block, C)
        centred = (a - batch_mean).transpose(1, 2).reshape(-1, self.channels)
        total = self.count + n
        assert self.position_mean is not None
        delta = batch_mean.cpu() - self.position_mean  # (C, block)
        weight = self.count * n / total / self.block  # n_p m_p / (n_p + m_p) per position
        if self.comoment is not None:
            self.comoment += (centred.T @ centred).cpu() + (delta @ delta.T) * weight
        self.m2 += (centred**2).sum(dim=0).cpu() + (delta**2).sum(dim=1) * weight
        self.position_mean += delta * (n / total)
        self.mean = self.position_mean.mean(dim=1)
        self.count = total
        self._add_extremes(values)

    def _add_extremes(self, a: torch.Tensor) -> None:
        """Σ|x|, the zeros, the minimum and the maximum of an (M, C) float64 batch."""
        self.abs_sum += a.abs().sum(dim=0).cpu()
        self.zeros += (a == 0).sum(dim=0).cpu().to(torch.float64)
        self.min = torch.minimum(self.min, a.min(dim=0).values.cpu())
        self.max = torch.maximum(self.max, a.max(dim=0).values.cpu())

    def merged(self, other: RunningStats) -> RunningStats:
        """The statistics of both sets of activations together (Chan's merge). Blocks of
        different sizes (a group read flattened in one place and as a map in another) forget
        their positions' means first; their spread stays about them."""
        if self.block != other.block:
            return self._collapsed().merged(other._collapsed())
        track = self.comoment is not None and other.comoment is not None
        out = RunningStats(channels=self.channels, track_gram=track, block=self.block)
        total = self.count + other.count
        if total == 0:
            return out
        if self.position_mean is None or other.position_mean is None:
            delta = (other.mean - self.mean).unsqueeze(1)  # (C, 1): one position
            weight = self.count * other.count / total
        else:
            delta = other.position_mean - self.position_mean  # (C, block)
            weight = self.count * other.count / total / self.block
            out.position_mean = self.position_mean + delta * (other.count / total)
        if out.comoment is not None:
            assert self.comoment is not None and other.comoment is not None
            out.comoment = self.comoment + other.comoment + (delta @ delta.T) * weight
        out.count = total
        out.mean = self.mean + (other.mean - self.mean) * (other.count / total)
        out.m2 = self.m2 + other.m2 + (delta**2).sum(dim=1) * weight
        out.abs_sum = self.abs_sum + other.abs_sum
        out.zeros = self.zeros + other.zeros
        out.min = torch.minimum(self.min, other.min)
        out.max = torch.maximum(self.max, other.max)
        return out

    def _collapsed(self) -> RunningStats:
        """The same statistics as one position per channel: the positions' means are
        forgotten, the spread about them is kept (so is the overall mean)."""
        if self.block == 1:
            return self
        out = RunningStats(channels=self.channels, track_gram=self.comoment is not None)
        out.count, out.mean, out.m2, out.comoment = self.count, self.mean, self.m2, self.comoment
        out.abs_sum, out.zeros, out.min, out.max = self.abs_sum, self.zeros, self.min, self.max
        return out

    @property
    def std(self) -> torch.Tensor:
        """Sample standard deviation (Bessel-corrected, as torch.std); with blocks, about
        each position's mean (as torch.std of each position, pooled)."""
        if self.count < self.block + 1:
            return torch.zeros_like(self.mean)
        return (self.m2.clamp_min(0) / (self.count - self.block)).sqrt()

    @property
    def mean_magnitude(self) -> torch.Tensor:
        """How far from zero a channel is on average: |mean|; with blocks, the root mean
        square of its positions' means (features of opposite signs do not cancel)."""
        if self.position_mean is None:
            return self.mean.abs()
        return self.position_mean.pow(2).mean(dim=1).sqrt()

    @property
    def within_covariance(self) -> torch.Tensor:
        """(C, C) population covariance about each position's mean (the channels' own mean
        without blocks), what is left once every position's mean is known (needs
        `track_gram`)."""
        if self.comoment is None:
            raise ValueError("these statistics were collected without the Gram matrix")
        return self.comoment / max(self.count, 1)

    @property
    def covariance(self) -> torch.Tensor:
        """(C, C) population covariance of the channels over every sample and position
        (needs `track_gram`)."""
        within = self.within_covariance
        if self.position_mean is None:
            return within
        spread = self.position_mean - self.mean.unsqueeze(1)  # (C, block)
        return within + spread @ spread.T / self.block

    @property
    def gram(self) -> torch.Tensor:
        """(C, C) second moments E[x xᵀ] over every sample and position (needs `track_gram`)."""
        return self.covariance + torch.outer(self.mean, self.mean)

    def to_layer_stats(self, name: str) -> LayerStats:
        n = max(self.count, 1)
        return LayerStats(
            name=name,
            neurons=self.channels,
            count=self.count,
            mean=self.mean.tolist(),
            std=self.std.tolist(),
            abs_mean=(self.abs_sum / n).tolist(),
            zero_fraction=(self.zeros / n).tolist(),
            min=self.min.tolist(),
            max=self.max.tolist(),
        )


def collect(
    gm: fx.GraphModule,
    taps: dict[Tap, int],
    batches: Iterable[Batch],
    on_batch: Callable[[Batch], None] | None = None,
    gram: set[Tap] | None = None,
) -> dict[Tap, RunningStats]:
    """Accumulate statistics of the tapped channels over all batches.

    The activations are reduced where they are, with one fused kernel per statistic
    (`pruning.tap_moments`), and merged in float64: equal to `RunningStats.update` over the
    same values within float32 rounding (about 1e-7 relative), at a fraction of its cost.

    Args:
        gm: the unlifted module, in eval mode, on the device of the batches.
        taps: where a group is read (node, dim, offset, block) -> its number of channels.
        batches: model inputs; rows past `valid` pad a static batch and are not counted.
        on_batch: called after each batch (progress, cancellation).
        gram: taps whose (C, C) co-moments are accumulated too (linear compensation).

    Returns:
        tap -> the accumulated statistics of its channels (a channel's block positions, a
        flattened map's or a head's features, count as more samples of it, each position
        with a mean of its own).
    """
    moments = {
        tap: TapMoments(width, tap.span, track_gram=tap in (gram or set()))
        for tap, width in taps.items()
    }
    by_node: dict[str, list[TapMoments]] = {}
    for tap, accumulator in moments.items():
        by_node.setdefault(tap.node, []).append(accumulator)
    valid = 0
    scratch = Scratch()

    def reader(accumulators: list[TapMoments]) -> Callable[[torch.Tensor], None]:
        def on_value(value: torch.Tensor) -> None:
            rows = value[:valid]  # (B, ...): batch first; padding rows are not counted
            for accumulator in accumulators:
                accumulator.update(rows, scratch)

        return on_value

    module = tapped_copy(gm, {node: reader(acc) for node, acc in by_node.items()})
    with torch.inference_mode():
        for batch in batches:
            valid = batch.valid
            module(*batch.inputs)
            if on_batch is not None:
                on_batch(batch)
    return {tap: running_stats(accumulator) for tap, accumulator in moments.items()}


def running_stats(accumulator: TapMoments) -> RunningStats:
    """What a tap's accumulator gathered, as the reference's statistics."""
    block = accumulator.span.block
    out = RunningStats(accumulator.width, track_gram=accumulator.track_gram, block=block)
    totals = accumulator.totals()
    if totals is None:
        return out
    out.count = totals.samples
    out.mean, out.m2, out.abs_sum = totals.mean, totals.m2, totals.abs_sum
    out.zeros, out.min, out.max = totals.zeros, totals.min, totals.max
    out.comoment, out.position_mean = totals.comoment, totals.position_mean
    return out
