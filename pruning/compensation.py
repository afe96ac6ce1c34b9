"""What the consumers of removed channels get in their place: means, or a linear reconstruction.

Removing channels R of a group and keeping K, a consumer that read `W_R x_R + W_K x_K + c`
is given the best affine stand-in for the removed channels that the calibration data admits:

    x_R ≈ A x_K + b,   A = Σ_RK (Σ_KK + λI)⁻¹,   b = μ_R − A μ_K

(least squares over every calibration sample and position, from the group's covariance Σ
and mean μ at the consumer's input). Then `W_K += W_R A` and the constant `W_R b` folds into
the bias. With A = 0 this is mean folding (`b = μ_R`); when the removed channels are affine
in the kept ones it is exact. A channel substitution is the same at every kernel position of
a convolution (and at every position of a flattened feature map), so the same A applies to
every spatial column of the consumer's weight. At a padded border the input is zero for every
channel: the linear part stays exact there (A·0 = 0), while the constant part, like mean
folding, adds `W_R b` where the original saw zeros.

A channel that is a block of positions where it is read (an attention head's features, a
flattened map's positions) has a mean per position: b is then per position,
`b_p = μ_R,p − A μ_K,p`, and A is fitted to what is left about those means (the covariance
within positions), so a head whose features are constants of their own is folded exactly,
by mean folding and by linear compensation alike.
"""

from __future__ import annotations

import torch

from jobs.job_config import Compensation, Criterion
from pruning.config import PruneConfig
from pruning.graph import Tap
from pruning.stats import RunningStats

# Ridge relative to the kept channels' mean variance: keeps Σ_KK invertible when kept
# channels are dead or collinear, and shrinks A where the calibration data says little.
RIDGE = 1e-8
# Widest group whose (C, C) co-moments are accumulated (4096² float64 = 128 MiB); wider
# groups, and taps past GRAM_BUDGET_BYTES for the whole model, fall back to mean folding.
MAX_GRAM_WIDTH = 4096
GRAM_BUDGET_BYTES = 2 * 1024**3


def gram_bytes(width: int) -> int:
    return width * width * 8


def gram_taps(config: PruneConfig, taps: dict[Tap, int]) -> set[Tap]:
    """Taps that accumulate co-moments: those linear compensation or the reconstruction
    criterion reads, narrowest first, up to MAX_GRAM_WIDTH each and GRAM_BUDGET_BYTES in all
    (the others fall back to mean folding and the diagonal score)."""
    wanted = (
        config.compensate is Compensation.LINEAR or config.criterion is Criterion.RECONSTRUCTION
    )
    if not wanted:
        return set()
    chosen: set[Tap] = set()
    used = 0
    for tap, width in sorted(taps.items(), key=lambda item: item[1]):
        if width > MAX_GRAM_WIDTH or used + gram_bytes(width) > GRAM_BUDGET_BYTES:
            break
        chosen.add(tap)
        used += gram_bytes(width)
    return chosen


def reconstruction(
    stats: RunningStats, kept: list[int], gone: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map from kept to removed channels: `x_gone ≈ A @ x_kept + b`.

    Args:
        stats: the group's statistics at the consumer's input, with co-moments.
        kept, gone: channel indices of the group (disjoint).

    Returns:
        A (len(gone), len(kept)) and b (len(gone),), or (len(gone), block) with blocks,
        float64.
    """
    cov = stats.within_covariance  # (C, C), about each position's mean
    k = torch.tensor(kept, dtype=torch.long)
    r = torch.tensor(gone, dtype=torch.long)
    s_kk = cov.index_select(0, k).index_select(1, k)  # (K, K)
    s_kr = cov.index_select(0, k).index_select(1, r)  # (K, R)
    scale = float(s_kk.diagonal().mean()) if len(kept) else 0.0
    if scale <= 0.0:  # every kept channel is constant: nothing to reconstruct from
        a = torch.zeros(len(gone), len(kept), dtype=torch.float64)
    else:
        a = _ridge_solve(s_kk, s_kr, RIDGE * scale).T  # (R, K)
    means = folded_means(stats)
    b = means[r] - a @ means[k]  # (R,) or (R, block)
    return a, b


def folded_means(stats: RunningStats) -> torch.Tensor:
    """The means that compensation folds: (C,), or (C, block) per position with blocks."""
    return stats.mean if stats.position_mean is None else stats.position_mean


def _ridge_solve(s_kk: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """(S + ridge I)⁻¹ rhs by Cholesky, growing the ridge if rounding left S indefinite."""
    eye = torch.eye(s_kk.shape[0], dtype=s_kk.dtype)
    for _ in range(8):
        factor, info = torch.linalg.cholesky_ex(s_kk + ridge * eye)
        if int(info) == 0:
            solved: torch.Tensor = torch.cholesky_solve(rhs, factor)
            return solved
        ridge *= 100
    fallback: torch.Tensor = torch.linalg.lstsq(s_kk + ridge * eye, rhs).solution
    return fallback


def fold(
    columns: torch.Tensor, kept: list[int], gone: list[int], a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Fold the reconstruction into a consumer's columns of one group, in place.

    Args:
        columns: (out, C, positions) float64: the consumer's weight columns of the group's C
            channels, every kernel position and flattened block position on the last dim.
        kept, gone, a, b: as returned by `reconstruction` (b: zeros-free mean folding is
            `a = 0`, `b = means`); a (R, block) b holds one value per block position, and
            each block position's columns are the kernel positions that follow it.

    Returns:
        The (out,) shift of the consumer's bias: `Σ_positions W_R b`.
    """
    k = torch.tensor(kept, dtype=torch.long)
    r = torch.tensor(gone, dtype=torch.long)
    w_r = columns.index_select(1, r)  # (out, R, P)
    if a.numel():
        columns.index_add_(1, k, torch.einsum("orp,rk->okp", w_r, a))
    if b.dim() == 1:
        return torch.einsum("orp,r->o", w_r, b)
    block = b.shape[1]
    if w_r.shape[2] % block:  # a reader whose columns are not the tap's positions: pooled
        return torch.einsum("orp,r->o", w_r, b.mean(dim=1))
    w_r = w_r.reshape(w_r.shape[0], w_r.shape[1], block, -1)  # (out, R, block, kernel)
    return torch.einsum("orbk,rb->o", w_r, b)
