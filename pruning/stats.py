"""Streaming per-neuron activation statistics, merged batch by batch in float64.

Every batch contributes its count, mean and sum of squared deviations, merged with Chan's
parallel update, so the result equals `torch.mean`/`torch.std` over all activations whatever
the batch size, without keeping any activation beyond the current batch. Where linear
compensation needs them, the same update runs on the C x C matrix of co-moments (the
centred Gram matrix), from which `gram` = E[x xᵀ] and `covariance` follow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import fx

from pruning.data import Batch
from pruning.graph import Tap
from pruning.results import LayerStats


@dataclass
class RunningStats:
    """Accumulator for one tensor's channels; channels on `channel_dim`, the rest are samples."""

    channels: int
    channel_dim: int = -1
    count: int = 0
    track_gram: bool = False  # also accumulate the (C, C) co-moments (linear compensation)

    def __post_init__(self) -> None:
        zeros = torch.zeros(self.channels, dtype=torch.float64)
        # Sum over samples of (x - mean)(x - mean)ᵀ, merged like m2 (its diagonal).
        self.comoment: torch.Tensor | None = (
            torch.zeros(self.channels, self.channels, dtype=torch.float64)
            if self.track_gram
            else None
        )
        self.mean = zeros.clone()
        self.m2 = zeros.clone()  # sum of squared deviations from the mean
        self.abs_sum = zeros.clone()
        self.zeros = zeros.clone()
        self.min = torch.full((self.channels,), float("inf"), dtype=torch.float64)
        self.max = torch.full((self.channels,), float("-inf"), dtype=torch.float64)

    def update(self, activation: torch.Tensor) -> None:
        """Merge one batch of activations, e.g. (N, C) or (N, T, C) for channel_dim=-1."""
        a = activation.detach().movedim(self.channel_dim, -1).reshape(-1, self.channels)  # (M, C)
        a = a.to(torch.float64)
        n = a.shape[0]
        if n == 0:
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
        self.abs_sum += a.abs().sum(dim=0).cpu()
        self.zeros += (a == 0).sum(dim=0).cpu().to(torch.float64)
        self.min = torch.minimum(self.min, a.min(dim=0).values.cpu())
        self.max = torch.maximum(self.max, a.max(dim=0).values.cpu())

    def merged(self, other: RunningStats) -> RunningStats:
        """The statistics of both sets of activations together (Chan's merge)."""
        track = self.comoment is not None and other.comoment is not None
        out = RunningStats(channels=self.channels, track_gram=track)
        total = self.count + other.count
        if total == 0:
            return out
        delta = other.mean - self.mean
        if out.comoment is not None:
            assert self.comoment is not None and other.comoment is not None
            out.comoment = (
                self.comoment
                + other.comoment
                + torch.outer(delta, delta) * (self.count * other.count / total)
            )
        out.count = total
        out.mean = self.mean + delta * (other.count / total)
        out.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        out.abs_sum = self.abs_sum + other.abs_sum
        out.zeros = self.zeros + other.zeros
        out.min = torch.minimum(self.min, other.min)
        out.max = torch.maximum(self.max, other.max)
        return out

    @property
    def std(self) -> torch.Tensor:
        """Sample standard deviation (Bessel-corrected, as torch.std)."""
        if self.count < 2:
            return torch.zeros_like(self.mean)
        return (self.m2.clamp_min(0) / (self.count - 1)).sqrt()

    @property
    def covariance(self) -> torch.Tensor:
        """(C, C) population covariance of the channels (needs `track_gram`)."""
        if self.comoment is None:
            raise ValueError("these statistics were collected without the Gram matrix")
        return self.comoment / max(self.count, 1)

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


class TapInterpreter(fx.Interpreter):
    """Runs a module and hands the values of selected nodes to a callback as they appear."""

    def __init__(
        self, gm: fx.GraphModule, taps: set[str], on_tap: Callable[[str, torch.Tensor], None]
    ):
        super().__init__(gm, garbage_collect_values=True)
        self._taps = taps
        self._on_tap = on_tap

    def run_node(self, n: fx.Node) -> object:
        result = super().run_node(n)
        if n.name in self._taps and isinstance(result, torch.Tensor):
            self._on_tap(n.name, result)
        return result


def collect(
    gm: fx.GraphModule,
    taps: dict[Tap, int],
    batches: Iterable[Batch],
    on_batch: Callable[[Batch], None] | None = None,
    gram: set[Tap] | None = None,
) -> dict[Tap, RunningStats]:
    """Accumulate statistics of the tapped channels over all batches.

    Args:
        gm: the unlifted module, in eval mode, on the device of the batches.
        taps: where a group is read (node, dim, offset, block) -> its number of channels.
        batches: model inputs; rows past `valid` pad a static batch and are not counted.
        on_batch: called after each batch (progress, cancellation).
        gram: taps whose (C, C) co-moments are accumulated too (linear compensation).

    Returns:
        tap -> the accumulated statistics of its channels (a flattened channel's block
        positions count as more samples of that channel).
    """
    stats = {
        tap: RunningStats(channels=width, track_gram=tap in (gram or set()))
        for tap, width in taps.items()
    }
    by_node: dict[str, list[Tap]] = {}
    for tap in taps:
        by_node.setdefault(tap.node, []).append(tap)
    valid = 0

    def on_tap(name: str, value: torch.Tensor) -> None:
        value = value[:valid]  # (B, ...): batch first
        for tap in by_node[name]:
            stats[tap].update(_channels(value, tap, taps[tap]))

    interp = TapInterpreter(gm, set(by_node), on_tap)
    with torch.inference_mode():
        for batch in batches:
            valid = batch.valid
            interp.run(*batch.inputs)
            if on_batch is not None:
                on_batch(batch)
    return stats


def _channels(value: torch.Tensor, tap: Tap, width: int) -> torch.Tensor:
    """The tap's channels as the last dim, every other position a sample: (M, width)."""
    span = tap.span
    x = value.narrow(span.dim, span.offset, width * span.block).movedim(span.dim, -1)
    x = x.reshape(*x.shape[:-1], width, span.block).transpose(-1, -2)  # (..., block, width)
    return x.reshape(-1, width)
