"""Channels read as blocks of positions (attention heads, flattened feature maps): each position
keeps its own mean, the spread is about those means, and compensation folds each position's
mean where it is read. A head whose features are constants of their own is dead, and cutting
it with compensation changes nothing."""

from __future__ import annotations

import pytest
import torch

import pruning.tap_moments as tap_moments
from jobs.job_config import Criterion
from pruning.compensation import fold, folded_means, reconstruction
from pruning.config import Threshold
from pruning.criteria import select, variance_score
from pruning.graph import Span
from pruning.stats import RunningStats, running_stats
from pruning.tap_moments import Scratch, TapMoments

HEADS, DIM = 3, 4
CONSTANTS = torch.tensor([0.3, -1.7, 2.2, 0.05])  # head 1's features, one constant each


def _heads(rows: int, seed: int = 0) -> torch.Tensor:
    """(N, T, H * d) attention output, head 1 constant per feature, the others random."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 5, HEADS * DIM, generator=g) * 1.5 + 0.4
    x[..., DIM : 2 * DIM] = CONSTANTS
    return x


def _fast(batches: list[torch.Tensor], gram: bool = True) -> RunningStats:
    moments, scratch = TapMoments(HEADS, Span(dim=2, block=DIM), track_gram=gram), Scratch()
    with torch.inference_mode():
        for value in batches:
            moments.update(value, scratch)
    return running_stats(moments)


def _reference(batches: list[torch.Tensor]) -> RunningStats:
    s = RunningStats(channels=HEADS, track_gram=True, block=DIM)
    for value in batches:
        s.update(value)
    return s


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_reference_block_statistics_equal_torch_per_position(batch: int) -> None:
    data = _heads(301).double()
    s = _reference(list(data.split(batch)))
    x = data.reshape(-1, HEADS, DIM)  # (M, C, block): every token a sample of each position
    means = x.mean(0)  # (C, block)
    centred = x - means
    assert s.count == x.shape[0] * DIM
    assert s.position_mean is not None
    torch.testing.assert_close(s.position_mean, means, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.mean, x.mean((0, 2)), rtol=0, atol=1e-12)
    within = (centred**2).sum((0, 2)) / (s.count - DIM)  # Bessel: one mean per position
    torch.testing.assert_close(s.std, within.sqrt(), rtol=1e-10, atol=1e-12)
    rows = centred.transpose(1, 2).reshape(-1, HEADS)
    torch.testing.assert_close(s.within_covariance, rows.T @ rows / s.count, rtol=1e-10, atol=1e-12)
    pooled = x.transpose(1, 2).reshape(-1, HEADS)
    pooled = pooled - pooled.mean(0)
    torch.testing.assert_close(s.covariance, pooled.T @ pooled / s.count, rtol=1e-10, atol=1e-12)
    assert float(s.std[1]) < 1e-12  # constant at each position: no spread


def test_merged_blocks_equal_one_pass() -> None:
    data = _heads(90, seed=1).double()
    whole = _reference([data])
    halves = _reference([data[:33]]).merged(_reference([data[33:]]))
    assert halves.count == whole.count and halves.position_mean is not None
    torch.testing.assert_close(halves.position_mean, whole.position_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(halves.m2, whole.m2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(halves.within_covariance, whole.within_covariance)
    torch.testing.assert_close(halves.covariance, whole.covariance)


def test_blocks_of_different_sizes_merge_without_their_positions() -> None:
    """A group read as heads in one place and feature by feature in another: the positions'
    means are forgotten, the spread about them stays (the head with constant features adds
    nothing but the difference of the two places' overall means)."""
    heads = _reference([_heads(40).double()])
    plain = RunningStats(channels=HEADS, track_gram=True)
    plain.update(torch.randn(50, HEADS, dtype=torch.float64))
    both = heads.merged(plain)
    assert both.block == 1 and both.position_mean is None and both.count == heads.count + 50
    delta = plain.mean - heads.mean
    expected = heads.m2 + plain.m2 + delta**2 * (heads.count * 50 / both.count)
    torch.testing.assert_close(both.m2, expected)


@pytest.mark.parametrize("gram", [False, True])
def test_fast_head_statistics_see_constant_features_as_dead(
    monkeypatch: pytest.MonkeyPatch, gram: bool
) -> None:
    monkeypatch.setattr(tap_moments, "SCRATCH_ELEMENTS", 200)  # chunks of a few samples
    batches = [_heads(23, seed=s) for s in range(20)]  # more than MERGE_EVERY chunks
    fast, ref = _fast(batches, gram), _reference(batches)
    assert fast.position_mean is not None and ref.position_mean is not None
    torch.testing.assert_close(fast.position_mean, ref.position_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.position_mean[1], CONSTANTS.double(), rtol=1e-7, atol=0)
    torch.testing.assert_close(fast.std, ref.std, rtol=1e-5, atol=1e-6)
    assert float(fast.std[1]) < 1e-6 * float(fast.std[[0, 2]].min())  # pooled: about 1.4
    if gram:
        scale = float(ref.within_covariance.diagonal().max())
        torch.testing.assert_close(
            fast.within_covariance, ref.within_covariance, rtol=1e-5, atol=1e-5 * scale
        )
    score = variance_score(fast)
    assert float(score[1]) < 1e-6 and float(score[[0, 2]].min()) > 0.5


def test_criteria_read_each_position_of_a_head() -> None:
    """Head 0: features ±0.05 at fixed positions (|overall mean| 0, pooled std 0.05, no spread
    about them); head 1: features of std 0.02 about zero; head 2: large."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, HEADS * DIM, generator=g, dtype=torch.float64)
    x[:, :DIM] = torch.tensor([0.05, -0.05, 0.05, -0.05], dtype=torch.float64)
    x[:, DIM : 2 * DIM] *= 0.02
    s = RunningStats(channels=HEADS, block=DIM)
    s.update(x)
    stats = {"heads": s}
    assert select(Criterion.VARIANCE, stats, Threshold(std=0.01)) == {"heads": [1, 2]}
    # seed: head 0 is 0.05 from zero at each position, whatever its overall mean (0)
    assert select(Criterion.SEED, stats, Threshold(mean=0.1, std=0.03)) == {"heads": [2]}
    assert select(Criterion.SEED, stats, Threshold(mean=0.01, std=0.03)) == {"heads": [0, 2]}


def _reads(columns: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A Linear's output from (out, C, block) columns and (M, C, block) inputs."""
    return torch.einsum("ocb,mcb->mo", columns, x)


@pytest.mark.parametrize("linear", [False, True])
def test_compensation_folds_each_position_of_a_removed_head_exactly(linear: bool) -> None:
    """Head 1 constant per feature, head 2 = 0.5 x head 0 + a constant per feature: mean
    folding is exact for head 1; linear compensation for both (its map is fitted about each
    position's mean: the pooled covariance would see the constants as signal)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, HEADS, DIM, generator=g, dtype=torch.float64) + 0.7
    x[:, 1] = CONSTANTS.double()
    x[:, 2] = 0.5 * x[:, 0] + torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    s = RunningStats(channels=HEADS, track_gram=True, block=DIM)
    s.update(x.reshape(300, HEADS * DIM))
    weight = torch.randn(6, HEADS, DIM, generator=g, dtype=torch.float64)
    gone = [1, 2] if linear else [1]
    kept = [c for c in range(HEADS) if c not in gone]
    if linear:
        a, b = reconstruction(s, kept, gone)
        assert b.shape == (2, DIM)
    else:
        a, b = torch.zeros(len(gone), 0, dtype=torch.float64), folded_means(s)[gone]
    columns = weight.clone()
    shift = fold(columns, kept if linear else [], gone, a, b)
    got = _reads(columns[:, kept], x[:, kept]) + shift
    torch.testing.assert_close(got, _reads(weight, x), rtol=0, atol=1e-6)  # the ridge: 1e-8
