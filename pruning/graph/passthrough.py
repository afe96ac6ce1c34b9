"""Pass-through: ops that leave every channel where it is (activations, dropout, pooling,
reductions over other dims), and shape bookkeeping that reads sizes, not values.

Their output carries the input's channel map unchanged, or with the channel dim renumbered
when a reduction drops dims before it. Pooling or reducing *over* the channels mixes them,
so it freezes their groups, except for an RMSNorm's mean of squares (`rms_norm`).
"""

from __future__ import annotations

import torch
from torch import fx

from pruning.graph.registry import HandlerTable, argument, norm_dim, positional
from pruning.graph.rms_norm import mean_of_squares
from pruning.graph.tracking import WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()

_ELEMENTWISE = [
    aten.relu.default,
    aten.relu_.default,
    aten.leaky_relu.default,
    aten.leaky_relu_.default,
    aten.gelu.default,
    aten.silu.default,
    aten.silu_.default,
    aten.tanh.default,
    aten.sigmoid.default,
    aten.elu.default,
    aten.elu_.default,
    aten.hardswish.default,
    aten.hardswish_.default,
    aten.relu6.default,
    aten.hardtanh.default,
    aten.hardtanh_.default,
    aten.hardsigmoid.default,
    aten.hardsigmoid_.default,
    aten.mish.default,
    aten.softplus.default,
    aten.selu.default,
    aten.celu.default,
    aten.clone.default,
    aten.contiguous.default,
    aten.alias.default,
    aten.detach.default,
    aten.dropout.default,
    aten.dropout_.default,  # nn.Dropout(inplace=True), as torchvision's classifiers have it
    aten.feature_dropout.default,
    aten.alpha_dropout.default,
    aten._to_copy.default,
    aten.to.dtype,
    aten.to.device,
    aten.to.dtype_layout,
    aten.neg.default,
    aten.abs.default,
    aten.exp.default,
    aten.sqrt.default,
    aten.rsqrt.default,
    aten.clamp.default,
    aten.clamp_min.default,
    aten.clamp_max.default,
    aten.mul.Scalar,
    aten.add.Scalar,
    aten.sub.Scalar,
    aten.div.Scalar,
    aten.pow.Tensor_Scalar,
    # Masks of a decomposed softmax: comparisons and logic on the values, channel by channel.
    aten.eq.Scalar,
    aten.ne.Scalar,
    aten.logical_not.default,
    # A constant tensor shaped like its input: sliced with it, as the input is.
    aten.full_like.default,
    aten.zeros_like.default,
    aten.ones_like.default,
    aten.empty_like.default,
]


@HANDLERS.handles(*_ELEMENTWISE)
def _same(state: WalkState, node: fx.Node) -> None:
    state.set_map(node, state.map_of(positional(node, 0)))


_POOLS = [
    aten.max_pool1d.default,
    aten.max_pool2d.default,
    aten.max_pool3d.default,
    aten.avg_pool1d.default,
    aten.avg_pool2d.default,
    aten.avg_pool3d.default,
    aten.adaptive_avg_pool1d.default,
    aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool3d.default,
    aten._adaptive_avg_pool2d.default,
    aten.adaptive_max_pool1d.default,
    aten.adaptive_max_pool2d.default,
    aten.max_pool2d_with_indices.default,
]


@HANDLERS.handles(*_POOLS)
def _pool(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    # Pooling works on the trailing spatial dims; the channel dim (1 of N, C, ...) stays.
    if m is not None and m.dim != 1:
        state.freeze(m.groups, f"{node.name} pools over these channels")
        m = None
    state.set_map(node, m)


@HANDLERS.handles(
    aten.mean.dim,
    aten.sum.dim_IntList,
    aten.amax.default,
    aten.amin.default,
    aten.any.dim,
    aten.all.dim,
)
def _reduce(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    dims = argument(node, 1, "dim")
    keep = bool(argument(node, 2, "keepdim", False))
    if m is None:
        state.set_map(node, None)
        return
    dims = [dims] if isinstance(dims, int) else dims  # any.dim / all.dim take one dim
    dims = list(range(ndim)) if dims is None else [norm_dim(int(d), ndim) for d in dims]
    if m.dim in dims:
        # An RMSNorm's mean of squares lets the channels be cut (`rms_norm`); nothing else.
        if not mean_of_squares(state, node, m, dims):
            state.freeze(m.groups, f"{node.name} reduces over these channels")
        state.set_map(node, None)
        return
    state.set_map(node, m if keep else m.moved(m.dim - sum(d < m.dim for d in dims)))


@HANDLERS.handles(aten.roll.default)
def _roll(state: WalkState, node: fx.Node) -> None:
    """Rolling other dims (Swin's shifted windows) moves positions, not channels."""
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    dims = argument(node, 2, "dims", [])
    rolled = [norm_dim(int(d), ndim) for d in dims] if dims else list(range(ndim))
    if m is not None and m.dim in rolled:
        state.freeze(m.groups, f"{node.name} rolls these channels")
        m = None
    state.set_map(node, m)


@HANDLERS.handles(aten.pad.default, aten.constant_pad_nd.default)
def _pad(state: WalkState, node: fx.Node) -> None:
    """Padding other dims (Swin pads the image to whole windows) leaves the channels; a
    non-zero pad of the channel dim would add channels no layer owns."""
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    pads = list(argument(node, 1, "pad", []))
    if m is not None:
        at = ndim - 1 - m.dim  # pads come in (before, after) pairs from the last dim back
        if len(pads) > 2 * at and any(p != 0 for p in pads[2 * at : 2 * at + 2]):
            state.freeze(m.groups, f"{node.name} pads these channels")
            m = None
    state.set_map(node, m)


@HANDLERS.handles(
    aten.sym_size.int,
    aten.sym_numel.default,
    aten.new_zeros.default,  # a fresh tensor of given sizes: only dtype and device are read
    aten.new_ones.default,
    aten.new_empty.default,
    aten.new_full.default,
    aten.sym_stride.int,
    aten._assert_tensor_metadata.default,
)
def _sizes_only(state: WalkState, node: fx.Node) -> None:
    """Shape bookkeeping reads sizes, not values: it carries no channels and freezes nothing."""
    state.set_map(node, None)
