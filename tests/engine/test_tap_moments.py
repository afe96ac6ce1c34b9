"""The statistics pass's fast accumulator equals the float64 reference over the same values.

`RunningStats.update` converts each batch to float64 (checked against torch.mean/std in
test_stats.py); `TapMoments` reduces in the activations' precision and merges in float64.
They must agree within float32 rounding for every layout a tap can read: channels last or
first, a slice of a concatenation (offset), a flattened feature map or attention heads (block:
each position's mean, the spread about it), chunked batches, non-contiguous values, and
channels whose mean dwarfs their spread.
"""

from __future__ import annotations

import pytest
import torch
from torch import fx

import pruning.tap_moments as tap_moments
from pruning.data import Batch
from pruning.graph import Span, Tap
from pruning.stats import RunningStats, collect, running_stats
from pruning.tap_moments import Scratch, TapMoments


def _reference(batches: list[torch.Tensor], span: Span, width: int) -> RunningStats:
    """The reference: each batch's channels (C x block, channels last) in float64, by Chan."""
    ref = RunningStats(channels=width, track_gram=True, block=span.block)
    for value in batches:
        ref.update(value.narrow(span.dim, span.offset, width * span.block).movedim(span.dim, -1))
    return ref


def _accumulate(batches: list[torch.Tensor], span: Span, width: int, gram: bool) -> RunningStats:
    moments, scratch = TapMoments(width, span, track_gram=gram), Scratch()
    with torch.inference_mode():
        for value in batches:
            moments.update(value, scratch)
    assert moments.totals() is not None
    return running_stats(moments)


def _assert_agree(fast: RunningStats, ref: RunningStats, gram: bool) -> None:
    assert fast.count == ref.count
    scale = ref.mean.abs() + ref.std + 1e-30
    assert ((fast.mean - ref.mean).abs() / scale).max() < 1e-6
    torch.testing.assert_close(fast.std, ref.std, rtol=1e-5, atol=1e-6 * float(scale.max()))
    torch.testing.assert_close(fast.abs_sum, ref.abs_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.zeros, ref.zeros, rtol=0, atol=0)
    torch.testing.assert_close(fast.min, ref.min, rtol=0, atol=0)
    torch.testing.assert_close(fast.max, ref.max, rtol=0, atol=0)
    if ref.position_mean is None:
        assert fast.position_mean is None
    else:
        assert fast.position_mean is not None
        torch.testing.assert_close(
            fast.position_mean, ref.position_mean, rtol=1e-6, atol=1e-6 * float(scale.max())
        )
    if gram:
        tol = 1e-5 * float(ref.covariance.diagonal().max())
        torch.testing.assert_close(fast.covariance, ref.covariance, rtol=1e-5, atol=tol)
        within = ref.within_covariance
        torch.testing.assert_close(fast.within_covariance, within, rtol=1e-5, atol=tol)


def _batches(shape: tuple[int, ...], count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        x = torch.randn(*shape, generator=g) * 2 + 0.5
        out.append(torch.relu(x) - 0.3 * (x < -1))  # zeros, negatives and positives
    return out


@pytest.mark.parametrize("gram", [False, True])
@pytest.mark.parametrize(
    ("shape", "span", "width"),
    [
        ((37, 6), Span(dim=1), 6),  # (N, C): a linear layer
        ((9, 5, 4, 3), Span(dim=1), 5),  # (N, C, H, W): a convolution
        ((7, 11, 4), Span(dim=-1), 4),  # (N, T, C): tokens
        ((8, 10, 3, 2), Span(dim=1, offset=4), 3),  # a slice of a concatenation
        ((6, 24), Span(dim=1, offset=0, block=6), 4),  # a flattened (N, C*H*W) map
        ((5, 7, 20), Span(dim=2, offset=4, block=4), 3),  # heads of 4 features, (N, T, H*d)
        ((4, 30, 3), Span(dim=1, offset=6, block=6), 4),  # blocks, then more positions
        ((40, 300), Span(dim=1), 300),  # wide: the co-moments in bands of columns
    ],
)
def test_fast_moments_equal_the_float64_reference(
    shape: tuple[int, ...], span: Span, width: int, gram: bool
) -> None:
    batches = _batches(shape, 21)  # more than MERGE_EVERY: merged in float64 twice
    batches[3][:2] = 0.0  # rows of exact zeros
    _assert_agree(_accumulate(batches, span, width, gram), _reference(batches, span, width), gram)


@pytest.mark.parametrize("gram", [False, True])
def test_chunks_of_a_big_batch_count_once(monkeypatch: pytest.MonkeyPatch, gram: bool) -> None:
    monkeypatch.setattr(tap_moments, "SCRATCH_ELEMENTS", 50)  # a chunk of a few samples
    batches = _batches((13, 4, 3, 3), 5, seed=1)
    span = Span(dim=1)
    _assert_agree(_accumulate(batches, span, 4, gram), _reference(batches, span, 4), gram)


@pytest.mark.parametrize("gram", [False, True])
def test_non_contiguous_values_are_read_in_place(gram: bool) -> None:
    batches = [b.transpose(1, 2) for b in _batches((9, 3, 5), 4, seed=2)]  # (N, 5, 3) strided
    span = Span(dim=2)
    _assert_agree(_accumulate(batches, span, 3, gram), _reference(batches, span, 3), gram)


@pytest.mark.parametrize("gram", [False, True])
def test_a_large_offset_does_not_swamp_a_small_spread(gram: bool) -> None:
    """A near-constant channel far from zero (the kind pruning looks for): raw float32 sums
    of squares would bury its spread under the mean; the shifted moments keep it."""
    g = torch.Generator().manual_seed(3)
    batches = [1000.0 + 1e-2 * torch.randn(64, 3, generator=g) for _ in range(20)]
    batches = [torch.cat([b, torch.full((64, 1), 7.25)], dim=1) for b in batches]  # constant
    span = Span(dim=1)
    fast, ref = _accumulate(batches, span, 4, gram), _reference(batches, span, 4)
    torch.testing.assert_close(fast.std[:3], ref.std[:3], rtol=2e-2, atol=0)
    assert fast.std[3] == 0.0 and ref.std[3] == 0.0


def test_half_precision_activations_are_reduced_in_float32() -> None:
    batches = [b.to(torch.bfloat16) for b in _batches((16, 5), 3, seed=4)]
    span = Span(dim=1)
    fast = _accumulate(batches, span, 5, gram=True)
    ref = _reference([b.float() for b in batches], span, 5)
    _assert_agree(fast, ref, gram=True)


def test_collect_leaves_the_module_and_its_outputs_untouched() -> None:
    """The tapped copy shares the module's parameters, changes none of its values (the
    accumulator never writes into an activation) and leaves the original graph as it was."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(4, 6)
            self.b = torch.nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.b(torch.relu(self.a(x)))
            return out

    gm = fx.symbolic_trace(Net().eval())
    before = [n.name for n in gm.graph.nodes]
    relu = next(n.name for n in gm.graph.nodes if "relu" in n.name)
    x = torch.randn(10, 4)
    expected = gm(x)
    tap = Tap(node=relu, span=Span(dim=1))
    stats = collect(gm, {tap: 6}, [Batch(inputs=(x,), y=None, valid=10)], gram={tap})
    assert [n.name for n in gm.graph.nodes] == before
    torch.testing.assert_close(gm(x), expected, rtol=0, atol=0)
    hidden = torch.relu(gm.get_submodule("a")(x)).double()
    torch.testing.assert_close(stats[tap].mean, hidden.mean(0), rtol=1e-6, atol=1e-7)
