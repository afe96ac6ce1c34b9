"""Reshapes: ops that move the channel dim (permute, transpose, unsqueeze), merge it with the
dims after it (flatten, view), or cut another dim down (slice, select).

Merging turns each channel into a block of features (a feature map flattened for a Linear:
`Seg.block`); a view whose sizes spell out the channel count gets an `ArgFix` so that it
shrinks with the cut. A view that splits the channel dim into heads or parts regroups
the group (`split_view`); one that starts a channel shuffle is followed to its end
(`shuffle`). A slice that picks some channels cannot be followed and freezes the groups.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from pruning.graph.dims import shape_product
from pruning.graph.groups import ArgFix
from pruning.graph.registry import HandlerTable, argument, norm_dim, positional
from pruning.graph.shuffle import shuffle_start
from pruning.graph.split_view import merge_into_batch, split_channels, unperiod
from pruning.graph.tracking import ChannelMap, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()


# -- the channel dim moves ------------------------------------------------------------------
@HANDLERS.handles(aten.permute.default)
def _permute(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    order = [norm_dim(int(d), ndim) for d in positional(node, 1)]
    state.set_map(node, None if m is None else m.moved(order.index(m.dim)))


@HANDLERS.handles(aten.transpose.int, aten.t.default)
def _transpose(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    d0, d1 = (
        (0, 1)
        if node.target is aten.t.default
        else (
            norm_dim(int(positional(node, 1)), ndim),
            norm_dim(int(positional(node, 2)), ndim),
        )
    )
    if m is None:
        state.set_map(node, None)
    else:
        state.set_map(node, m.moved(d1 if m.dim == d0 else d0 if m.dim == d1 else m.dim))


@HANDLERS.handles(aten.unsqueeze.default)
def _unsqueeze(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    d = norm_dim(int(positional(node, 1)), state.ndim(node) or 0)
    state.set_map(node, None if m is None else m.moved(m.dim + (1 if d <= m.dim else 0)))


@HANDLERS.handles(aten.expand.default)
def _expand(state: WalkState, node: fx.Node) -> None:
    """Broadcasting to new leading dims (a decomposed matmul): the channels move right.

    A channel dim of size 1 broadcast to many would repeat one channel, so it freezes; a
    literal size along the channel dim shrinks with the cut.
    """
    src = positional(node, 0)
    m = state.map_of(src)
    src_shape, out_shape = state.shape(src), state.shape(node)
    if m is None or src_shape is None or out_shape is None:
        state.set_map(node, None)
        return
    dim = m.dim + len(out_shape) - len(src_shape)
    if src_shape[m.dim] != out_shape[dim]:
        state.freeze(m.groups, f"{node.name} repeats these channels (broadcast from size 1)")
        state.set_map(node, None)
        return
    new = m.moved(dim)
    sizes = positional(node, 1)
    if isinstance(sizes, (list, tuple)) and isinstance(sizes[dim], int) and sizes[dim] > 0:
        for seg in new.segs:
            if seg.group is not None:
                state.group(seg.group).arg_fixes.append(ArgFix(node.name, 1, dim, seg.block))
    state.set_map(node, new)


@HANDLERS.handles(aten.squeeze.dims, aten.squeeze.dim, aten.squeeze.default)
def _squeeze(state: WalkState, node: fx.Node) -> None:
    """Dims of size 1 go (a decomposed conv1d's pooling): the channel dim moves left."""
    src = positional(node, 0)
    m = state.map_of(src)
    shape = state.shape(src)
    if m is None or shape is None:
        state.set_map(node, None)
        return
    ndim = len(shape)
    given = argument(node, 1, "dim")
    if given is None:
        given = list(range(ndim))
    elif not isinstance(given, (list, tuple)):
        given = [given]
    gone = [d for d in (norm_dim(int(g), ndim) for g in given) if shape[d] == 1]
    if m.dim in gone:
        state.freeze(m.groups, f"{node.name} squeezes these channels away")
        state.set_map(node, None)
        return
    state.set_map(node, m.moved(m.dim - sum(d < m.dim for d in gone)))


# -- the channel dim merges with the dims after it -----------------------------------------
@HANDLERS.handles(aten.flatten.using_ints)
def _flatten(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    shape = state.shape(positional(node, 0))
    if m is None or shape is None:
        state.set_map(node, None)
        return
    ndim = len(shape)
    start = norm_dim(int(argument(node, 1, "start_dim", 0)), ndim)
    end = norm_dim(int(argument(node, 2, "end_dim", -1)), ndim)
    state.set_map(node, _merge_dims(state, node, m, shape, start, end))


def _merge_dims(
    state: WalkState, node: fx.Node, m: ChannelMap, shape: tuple[Any, ...], start: int, end: int
) -> ChannelMap | None:
    """The map after dims start..end are merged into one: channels become blocks."""
    if m.dim < start:
        return m
    if m.dim > end:
        return m.moved(m.dim - (end - start))
    if m.dim != start:
        state.freeze(m.groups, f"{node.name} interleaves these channels with other features")
        return None
    trailing = shape[start + 1 : end + 1]
    if not all(isinstance(s, int) for s in trailing):
        state.freeze(m.groups, f"{node.name} flattens a dimension of dynamic size")
        return None
    spread = [s.spread(math.prod(trailing)) for s in m.segs]
    if None in spread:
        state.freeze(m.groups, f"{node.name} flattens channels a shuffle interleaved")
        return None
    return ChannelMap(start, tuple(s for s in spread if s is not None))


@HANDLERS.handles(aten.view.default, aten.reshape.default, aten._unsafe_view.default)
def _view(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    src, out = state.shape(positional(node, 0)), state.shape(node)
    if m is None or src is None or out is None:
        state.set_map(node, None)
        return
    if m.period:
        _settle(state, node, m, unperiod(state, node, m, src, out))
        return
    if shuffle_start(state, node):
        return
    new = _view_map(m, src, out)
    if new is None and m.interleaved:
        state.freeze(m.groups, f"{node.name} splits channels a shuffle interleaved")
        state.set_map(node, None)
        return
    if new is None:
        split = split_channels(state, node, m, src, out, (1, 0))
        _settle(state, node, m, split or merge_into_batch(state, node, m, src, out))
        return
    sizes = positional(node, 1)
    # A literal size along the channel dim shrinks with the cut (-1 and symbols need nothing).
    if isinstance(sizes, (list, tuple)) and isinstance(sizes[new.dim], int) and sizes[new.dim] > 0:
        for seg in new.segs:
            if seg.group is not None:
                state.group(seg.group).arg_fixes.append(ArgFix(node.name, 1, new.dim, seg.block))
    state.set_map(node, new)


@HANDLERS.handles(aten.unflatten.int)
def _unflatten(state: WalkState, node: fx.Node) -> None:
    """`unflatten(x, dim, sizes)`: the channel dim split (MultiheadAttention's (3, E)), or
    another dim split before it (the channels move right)."""
    m = state.map_of(positional(node, 0))
    src, out = state.shape(positional(node, 0)), state.shape(node)
    if m is None or src is None or out is None:
        state.set_map(node, None)
        return
    dim = norm_dim(int(positional(node, 1)), len(src))
    if dim != m.dim or m.period:
        added = len(out) - len(src)
        _settle(
            state, node, m, None if dim == m.dim else m.moved(m.dim + (added if dim < m.dim else 0))
        )
        return
    _settle(state, node, m, split_channels(state, node, m, src, out, (2, -dim)))


def _settle(state: WalkState, node: fx.Node, m: ChannelMap, new: ChannelMap | None) -> None:
    """Set the map a view found, or freeze what it could not follow."""
    if new is None:
        state.freeze(
            m.groups,
            f"{node.name} splits these channels across dimensions in a way that cannot be cut "
            "(not whole heads or parts)",
        )
    state.set_map(node, new)


def _view_map(m: ChannelMap, src: tuple[Any, ...], out: tuple[Any, ...]) -> ChannelMap | None:
    """Find where the channel dim lands in a view: kept whole, or merged with trailing dims."""
    prefix = shape_product(src[: m.dim])
    for j in range(len(out)):
        if shape_product(out[:j]) != prefix:
            continue
        for k in range(m.dim, len(src)):
            merged = src[m.dim : k + 1]
            if not all(isinstance(s, int) for s in merged):
                break
            if out[j] == math.prod(merged):
                spread = [s.spread(math.prod(merged[1:])) for s in m.segs]
                if None in spread:
                    return None
                return ChannelMap(j, tuple(s for s in spread if s is not None))
    return None


# -- another dim is cut down ---------------------------------------------------------------
@HANDLERS.handles(
    aten.slice.Tensor, aten.select.int, aten.narrow.default, aten.index_select.default
)
def _slice(state: WalkState, node: fx.Node) -> None:
    m = state.map_of(positional(node, 0))
    ndim = state.ndim(positional(node, 0)) or 0
    dim = norm_dim(int(argument(node, 1, "dim", 0)), ndim)
    if m is None:
        state.set_map(node, None)
    elif dim == m.dim:
        state.freeze(m.groups, f"{node.name} selects some of these channels")
        state.set_map(node, None)
    elif node.target is aten.select.int:
        state.set_map(node, m.moved(m.dim - (1 if dim < m.dim else 0)))
    else:
        state.set_map(node, m)  # another dimension is cut down: the channels stay
