"""Coupling: where two groups must be cut alike — a residual add, a gate (x * s), parts
concatenated along another dim (tokens) — and stored tensors sliced with the channels.

When two tracked tensors meet elementwise, the channel at one position of each is one
channel: their groups are united (`WalkState.union`), so one cut removes both. A tensor
that is not tracked must broadcast over the channels (a scalar, a per-sample gate) or be a
stored tensor that holds them (a position embedding, a layer scale), which is then sliced
with them; anything else freezes the groups.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from pruning.graph.groups import ArgFix, ParamSlice
from pruning.graph.param_trace import stored_source
from pruning.graph.registry import HandlerTable, positional
from pruning.graph.tracking import ChannelMap, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()

_ELEMENTWISE_BINARY = [
    aten.add.Tensor,
    aten.sub.Tensor,
    aten.mul.Tensor,
    aten.div.Tensor,
    aten.add_.Tensor,
    aten.mul_.Tensor,
    aten.maximum.default,
    aten.minimum.default,
]


@HANDLERS.handles(*_ELEMENTWISE_BINARY)
def _elementwise_binary(state: WalkState, node: fx.Node) -> None:
    a, b = positional(node, 0), positional(node, 1)
    out_ndim = state.ndim(node) or 0
    ma, mb = (_aligned(state, x, out_ndim) for x in (a, b))
    if ma is not None and mb is not None:
        _couple_residual_or_gate(state, node, ma, mb)
    elif ma is not None:
        _meet_untracked(state, node, ma, b, out_ndim)
    elif mb is not None:
        _meet_untracked(state, node, mb, a, out_ndim)
    else:
        state.set_map(node, None)


@HANDLERS.handles(aten.where.self)
def _where(state: WalkState, node: fx.Node) -> None:
    """`where(cond, a, b)`, channel by channel (a decomposed softmax's guard for rows of
    -inf): tracked operands are coupled, the others must be the same for every channel."""
    out_ndim = state.ndim(node) or 0
    operands = [positional(node, i) for i in range(3)]
    maps = [_aligned(state, x, out_ndim) for x in operands]
    tracked = [m for m in maps if m is not None]
    if not tracked:
        state.set_map(node, None)
        return
    first = tracked[0]
    for other in tracked[1:]:
        _couple_residual_or_gate(state, node, first, other)
        if state.map_of(node) is None:
            return
    for x, m in zip(operands, maps, strict=True):
        if m is None and not broadcasts_over(state, x, first.dim, out_ndim):
            state.freeze(first.groups, f"{node.name} picks between these channels and others")
            state.set_map(node, None)
            return
    state.set_map(node, first)


def _couple_residual_or_gate(
    state: WalkState, node: fx.Node, first: ChannelMap, second: ChannelMap
) -> None:
    """A residual add (x + f(x)) or a gate (x * s): both operands carry tracked channels.

    Channels at the same position are one channel after the op, so the groups there are
    united and cut alike. Operands laid out differently, or a group meeting channels that
    no layer owns, cannot be cut consistently and freeze.
    """
    if first.dim != second.dim or _layout(first) != _layout(second):
        state.freeze(
            first.groups + second.groups, f"{node.name} combines channels laid out differently"
        )
        state.set_map(node, None)
        return
    for s1, s2 in zip(first.segs, second.segs, strict=True):
        if s1.group is None or s2.group is None:
            state.freeze(
                [g for g in (s1.group, s2.group) if g is not None],
                f"{node.name} adds these channels to channels that cannot be cut",
            )
        else:
            state.union(s1.group, s2.group, node.name)
    state.set_map(node, first)


def _meet_untracked(
    state: WalkState, node: fx.Node, m: ChannelMap, other: Any, out_ndim: int
) -> None:
    """Tracked channels meet a tensor no group tracks: it must broadcast over the channels,
    or be a stored tensor sliced with them; else the groups freeze."""
    if broadcasts_over(state, other, m.dim, out_ndim) or slice_stored(state, other, m, out_ndim):
        state.set_map(node, m)
        return
    state.freeze(
        m.groups,
        f"{node.name} combines these channels with a tensor that is not cut alongside",
    )
    state.set_map(node, None)


def couple_cat_along_other_dim(
    state: WalkState, node: fx.Node, inputs: list[Any], maps: list[ChannelMap | None], ndim: int
) -> None:
    """Concatenation along another dim (tokens, say): every part carries the same channels,
    so tracked parts are coupled and stored parts (a class token) are sliced with them."""
    tracked = [m for m in maps if m is not None]
    ref = tracked[0]
    if any(m.dim != ref.dim or _layout(m) != _layout(ref) for m in tracked):
        state.freeze(
            [g for m in tracked for g in m.groups],
            f"{node.name} concatenates channels laid out differently",
        )
        state.set_map(node, None)
        return
    for other in tracked[1:]:
        for s1, s2 in zip(ref.segs, other.segs, strict=True):
            if s1.group is not None and s2.group is not None:
                state.union(s1.group, s2.group, node.name)
    for x, m in zip(inputs, maps, strict=True):
        if m is None and not slice_stored(state, x, ref, ndim):
            state.freeze(
                ref.groups,
                f"{node.name} concatenates these channels with a tensor that is not cut alongside",
            )
            state.set_map(node, None)
            return
    state.set_map(node, ref)


def _layout(m: ChannelMap) -> list[tuple[int, int, int, int, int]]:
    """Where the runs of channels sit, whichever groups own them."""
    return [(s.start, s.width, s.block, s.pitch, s.step) for s in m.segs]


def slice_stored(state: WalkState, other: Any, m: ChannelMap, out_ndim: int) -> bool:
    """A stored tensor meeting the channels elementwise (a position embedding, a layer-scale
    vector, Swin's relative position bias per head) is sliced with them, along the dim the
    channels come from (`param_trace`). Returns False if `other` is not such a tensor."""
    shape = state.shape(other)
    if shape is None:
        return False
    dim = m.dim - (out_ndim - len(shape))
    total = max(s.end for s in m.segs)
    if dim < 0 or shape[dim] != total:
        return False
    source = stored_source(state, other, dim)
    if source is None:
        return False
    for seg in m.segs:
        if seg.group is not None:
            group = state.group(seg.group)
            span = seg.span(source.dim)
            group.channel_params.append(ParamSlice(source.path, span))
            group.arg_fixes.extend(ArgFix(node, 1, item, seg.block) for node, item in source.sizes)
            state.claim(source.path, span, seg.group, "a stored tensor")
    return True


def _aligned(state: WalkState, x: Any, out_ndim: int) -> ChannelMap | None:
    """The map of `x` in the output's dims (broadcasting aligns dims from the right)."""
    m = state.map_of(x)
    if m is None:
        return None
    return m.moved(m.dim + out_ndim - (state.ndim(x) or 0))


def broadcasts_over(state: WalkState, other: Any, dim: int, out_ndim: int) -> bool:
    """True if `other` (untracked) has size 1 or no dim where the channels are."""
    if not isinstance(other, fx.Node):
        return True  # a Python scalar
    shape = state.shape(other)
    if shape is None:
        return False
    j = dim - (out_ndim - len(shape))
    return j < 0 or shape[j] == 1
