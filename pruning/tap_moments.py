"""The statistics pass's accumulator: a few cheap reductions on the activations as they are.

`RunningStats.update` (pruning/stats.py) is the reference: it converts each batch to float64
and passes over it about eight times. Here a batch is read where it lies, on its device, in
its layout and precision, with reductions that vectorise well on a CPU and launch few kernels
on a GPU (Welford's `var_mean`, `count_nonzero` and norms are several times slower there):

- moments about a fixed shift `s` (the first batch's channel means): Σ (x − s) and
  Σ (x − s)². With s close to the mean, the variance Σ (x − s)² / n − (Σ (x − s) / n)²
  loses nothing to cancellation, unlike raw sums of squares;
- Σ |x| and Σ sign|x| (the zeros), the minimum and the maximum.

Where the co-moments are wanted (linear compensation, the reconstruction criterion), the
shifted activations are written once, in float64, into an (M, C + 1) block whose last column
is 1, and one product with itself gives the co-moments, Σ (x − s) (its last row) and
Σ (x − s)² (its diagonal) together. That product is the one real cost: about two layers'
forwards where the layer is as wide as its input (float64 products run at half speed; in
float32 their rounding would swamp the ridge that the criterion's inverses rely on).

A channel that spans several positions (`Span.block`: a flattened map's positions, an
attention head's features) keeps Σ (x − s) and Σ (x − s)² per position, about a shift per
position, so each position's mean is known and the spread is measured about it: a head
whose features are constants of their own has none, to the last bit of float32 rounding
(about its shift, rather than as a difference of two large pooled sums). That is C × block
numbers per sum, never a per-position Gram.

Per-chunk results (one value per channel, or per channel and position) are summed in the
activations' precision for at most `MERGE_EVERY` chunks, then added into float64 totals, so
the totals keep float64 precision however many batches come, and nothing waits on the host
between batches (no CUDA synchronisation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from pruning.graph import Span

MERGE_EVERY = 16  # chunks summed in the activations' precision before a float64 merge
# Elements of a batch read at once: a big batch of feature maps is reduced chunk by chunk
# through one scratch buffer of about this size, shared by every tap, so the pass allocates
# (and page-faults) nothing per batch and its temporary memory does not grow with the batch.
SCRATCH_ELEMENTS = 1 << 22


class Scratch:
    """Reusable buffers (one per dtype and device) for the temporaries of a statistics pass."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def like(self, x: torch.Tensor) -> torch.Tensor:
        """A contiguous tensor of x's shape, dtype and device, its content undefined."""
        return self._take(x.numel(), x.dtype, x.device).view(x.shape)

    def matrix(
        self, rows: int, columns: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        return self._take(rows * columns, dtype, device).view(rows, columns)

    def _take(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        buffer = self._buffers.get((dtype, device))
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[(dtype, device)] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel]


class MomentTotals(NamedTuple):
    """What a tap accumulated, float64 on the CPU: the fields of `RunningStats`."""

    samples: int
    mean: torch.Tensor  # (C,)
    m2: torch.Tensor  # (C,) sum of squared deviations from the mean (each position's)
    abs_sum: torch.Tensor
    zeros: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    comoment: torch.Tensor | None  # (C, C) Σ (x − μ)(x − μ)ᵀ, when the Gram is tracked
    position_mean: torch.Tensor | None  # (C, block) with blocks: μ per position, the μ
    # that m2 and the co-moments are then taken about


class TapMoments:
    """Accumulates one tap's channels, batch by batch, on the activations' device."""

    def __init__(self, width: int, span: Span, track_gram: bool) -> None:
        self.width = width
        self.span = span
        self.track_gram = track_gram
        self.count = 0
        self._shift: torch.Tensor | None = None  # (C,) or (C, block) s, activations' dtype
        self._pending: list[tuple[torch.Tensor, ...]] = []  # per chunk: sums, (C,) or (C, B)
        self._sums: list[torch.Tensor] | None = None  # float64: Σd, Σd², Σ|x|, nonzero
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._gram: torch.Tensor | None = None  # (C+1, C+1) float64 Σ [d, 1][d, 1]ᵀ

    def update(self, value: torch.Tensor, scratch: Scratch) -> None:
        """Merge one batch: `value` is the node's output for the valid rows, batch first.
        `scratch` lends the temporary space (shared by every tap of a pass)."""
        x, channel_dim = self._channels(value)
        n = x.numel() // self.width
        if n == 0:
            return
        dims = [d for d in range(x.dim()) if d != channel_dim]
        if self._shift is None:
            block = self.span.block
            if block == 1:
                self._shift = x.sum(dims) / n
            else:  # the first batch's mean at each position
                self._shift = x.sum([d for d in dims if d != channel_dim + 1]) / (n // block)
        rows = max(1, SCRATCH_ELEMENTS // max(x[0].numel(), 1))
        for start in range(0, x.shape[0], rows):  # chunks along the batch
            chunk = x[start : start + rows]
            self._reduce(chunk, dims, channel_dim, scratch)
            if self.track_gram:
                self._add_gram(chunk, channel_dim, scratch)
            if len(self._pending) >= MERGE_EVERY:
                self._merge()
        self.count += n

    def totals(self) -> MomentTotals | None:
        """The accumulated statistics, as float64 on the CPU; None when no sample came."""
        self._merge()
        if self.count == 0 or self._sums is None or self._shift is None:
            return None
        assert self._min is not None and self._max is not None
        n, c, block = self.count, self.width, self.span.block
        comoment = position_mean = None
        gram = None if self._gram is None else self._gram.triu() + self._gram.triu(1).T
        if gram is not None and block == 1:  # the bands above hold the upper part
            shifted_sum, shifted_squares = gram[c, :c], gram.diagonal()[:c]
            comoment = _host(gram[:c, :c] - torch.outer(shifted_sum, shifted_sum) / n)
            abs_sum, nonzero = self._sums
        else:
            shifted_sum, shifted_squares, abs_sum, nonzero = self._sums
        if block == 1:
            mean = self._shift.to(torch.float64) + shifted_sum / n
            m2 = (shifted_squares - shifted_sum**2 / n).clamp_min(0)
        else:  # (C, block) sums; each position has n / block samples
            per = n // block
            position_mean = _host(self._shift.to(torch.float64) + shifted_sum / per)
            mean = position_mean.mean(dim=1)
            m2 = (shifted_squares - shifted_sum**2 / per).clamp_min(0).sum(dim=1)
            if gram is not None:  # about each position's mean: Σ_p over (C, C) outer products
                comoment = _host(gram[:c, :c] - shifted_sum @ shifted_sum.T / per)
        return MomentTotals(
            samples=n,
            mean=_host(mean),
            m2=_host(m2),
            abs_sum=_host(abs_sum),
            zeros=_host(n - nonzero),
            min=_host(self._min),
            max=_host(self._max),
            comoment=comoment,
            position_mean=position_mean,
        )

    def _channels(self, value: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The tap's slice of `value`, the channels on one dim (a view, never a copy unless the
        dtype is below float32); a flattened channel's block becomes one more sample dim."""
        dim = self.span.dim % value.dim()
        block = self.span.block
        if self.span.contiguous:
            x = value.detach().narrow(dim, self.span.offset, self.width * block)
        else:  # channels a shuffle interleaved: gathered, channel by channel (a copy)
            at = torch.tensor(self.span.positions(range(self.width)), device=value.device)
            x = value.detach().index_select(dim, at)
        if block > 1:
            x = x.view(*x.shape[:dim], self.width, block, *x.shape[dim + 1 :])  # (.., C, block, ..)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)  # half precision would lose the moments
        return x, dim

    def _reduce(
        self, chunk: torch.Tensor, dims: list[int], channel_dim: int, scratch: Scratch
    ) -> None:
        """The per-channel sums of one chunk, through one scratch buffer (no allocation)."""
        assert self._shift is not None
        buffer = scratch.like(chunk)
        flat = _three_dims(buffer, channel_dim)  # (P, C, Q), a view: buffer is contiguous
        torch.abs(chunk, out=buffer)
        sums = [_channel_sum(flat), _channel_sum(buffer.sign_().view(flat.shape))]  # Σ|x|, nonzero
        if chunk.is_contiguous():
            values = _three_dims(chunk, channel_dim)
            extremes = [_channel_reduce(values, torch.amin), _channel_reduce(values, torch.amax)]
        else:
            extremes = [torch.amin(chunk, dims), torch.amax(chunk, dims)]
        if self.span.block > 1:  # per position, about each position's shift
            torch.sub(chunk, self._shift.reshape(self._shift_shape(chunk, channel_dim)), out=buffer)
            each = _four_dims(buffer, channel_dim)  # (P, C, block, Q)
            sums = [_position_sum(each), _position_sum(buffer.square_().view(each.shape)), *sums]
        elif not self.track_gram:  # else the co-moment product gives Σd and Σd²
            torch.sub(chunk, self._shift.reshape(self._shift_shape(chunk, channel_dim)), out=buffer)
            sums = [_channel_sum(flat), _channel_sum(buffer.square_().view(flat.shape)), *sums]
        self._pending.append((*sums, *extremes))

    def _shift_shape(self, chunk: torch.Tensor, channel_dim: int) -> list[int]:
        """The shape that broadcasts the shift over a chunk: C (and block) in place, 1s."""
        shape = [1] * chunk.dim()
        shape[channel_dim] = self.width
        if self.span.block > 1:
            shape[channel_dim + 1] = self.span.block
        return shape

    def _add_gram(self, chunk: torch.Tensor, channel_dim: int, scratch: Scratch) -> None:
        """Add Σ [x − s, 1][x − s, 1]ᵀ over this chunk to the total, in float64:
        the reconstruction criterion and linear compensation invert blocks of it, and
        float32 products (6e-8 relative each) would swamp the ridge that keeps collinear
        channels, such as two copies of one neuron, apart."""
        assert self._shift is not None
        c = self.width
        moved = chunk.movedim(channel_dim, -1)  # (..., C), a view
        rows = moved.numel() // c
        if self._gram is None:
            self._gram = torch.zeros(c + 1, c + 1, dtype=torch.float64, device=chunk.device)
        block = scratch.matrix(rows, c + 1, torch.float64, chunk.device)  # (M, C + 1)
        shifted = block[:, :c]
        shifted.view(moved.shape).copy_(moved)  # transposed to channels last, exactly widened
        shift = self._shift.to(torch.float64)
        if self.span.block > 1:  # each row is at one position (moved's dim channel_dim)
            shape = [1] * moved.dim()
            shape[channel_dim], shape[-1] = self.span.block, c
            shifted.view(moved.shape).sub_(shift.T.reshape(shape))
        else:
            shifted.sub_(shift)
        block[:, c] = 1.0
        width = c + 1
        step = -(-width // min(4, max(1, width // 64)))  # up to 4 bands of 64+ columns
        for start in range(0, width, step):  # only the upper triangle's bands: symmetric
            band = block[:, start : start + step]
            self._gram[start : start + step, start:].addmm_(band.T, block[:, start:])

    def _merge(self) -> None:
        """Add what the last batches left, summed in their precision, into float64 totals."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        columns = [torch.stack(column) for column in zip(*pending, strict=True)]  # each (B, C)
        *sums, mins, maxs = [*columns[:-2], columns[-2].amin(0), columns[-1].amax(0)]
        batch_sums = [s.to(torch.float64).sum(0) for s in sums]
        if self._sums is None:
            self._sums, self._min, self._max = batch_sums, mins, maxs
        else:
            assert self._min is not None and self._max is not None
            self._sums = [a + b for a, b in zip(self._sums, batch_sums, strict=True)]
            self._min, self._max = torch.minimum(self._min, mins), torch.maximum(self._max, maxs)


def _three_dims(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """A contiguous x viewed as (before, C, after): reductions over the contiguous `after`
    first, then over `before`, vectorise far better than one reduction over both."""
    shape = x.shape
    return x.view(shape[:channel_dim].numel(), shape[channel_dim], shape[channel_dim + 1 :].numel())


def _four_dims(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """A contiguous (.., C, block, ..) x viewed as (before, C, block, after)."""
    shape = x.shape
    before, after = shape[:channel_dim].numel(), shape[channel_dim + 2 :].numel()
    return x.view(before, shape[channel_dim], shape[channel_dim + 1], after)


def _position_sum(x: torch.Tensor) -> torch.Tensor:
    """Σ over dims 3 then 0 of a (P, C, block, Q) tensor: (C, block)."""
    inner = x.sum(3) if x.shape[3] > 1 else x[..., 0]
    return inner.sum(0)


def _channel_reduce(
    x: torch.Tensor, op: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor:
    """op over dims 2 then 0 of a (P, C, Q) tensor: (C,)."""
    inner = op(x, 2) if x.shape[2] > 1 else x[:, :, 0]
    return op(inner, 0)


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    return _channel_reduce(x, torch.sum)


def _host(t: torch.Tensor) -> torch.Tensor:
    """A float64 CPU copy, a normal tensor even if `t` was made under inference mode."""
    return t.to("cpu", torch.float64, copy=True)
