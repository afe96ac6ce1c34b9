"""Concatenation and split along the channels: each group keeps its own run of positions.

`cat` along the channels places each part's groups at an offset (DenseNet, Inception
branches); `split`/`chunk` along them hand each part the runs inside it, and the part
sizes shrink with the cut. A split through one layer's channels either folds them (equal
parts of one layer, a fused qkv projection: channel c of every part is cut together) or
divides the group at the edges (ShuffleNet's channel split after a shuffle: `divide`).
Concatenation along another dim couples the parts instead
(`coupling.couple_cat_along_other_dim`).
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch
from torch import fx

from pruning.graph.coupling import couple_cat_along_other_dim
from pruning.graph.divide import divide_at_edges
from pruning.graph.groups import OUTPUT_SIZES, ArgFix
from pruning.graph.registry import HandlerTable, argument, norm_dim, positional
from pruning.graph.regroup import fold_parts
from pruning.graph.tracking import ChannelMap, Seg, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()


@HANDLERS.handles(aten.cat.default)
def _cat(state: WalkState, node: fx.Node) -> None:
    inputs = list(positional(node, 0))
    ndim = state.ndim(node) or 0
    dim = norm_dim(int(argument(node, 1, "dim", 0)), ndim)
    maps = [state.map_of(x) for x in inputs]
    if all(m is None for m in maps):
        state.set_map(node, None)
        return
    if any(m is not None and m.dim != dim for m in maps):
        couple_cat_along_other_dim(state, node, inputs, maps, ndim)
        return
    segs: list[Seg] = []
    offset = 0
    for x, m in zip(inputs, maps, strict=True):
        shape = state.shape(x)
        size = shape[dim] if shape is not None else None
        if not isinstance(size, int):
            state.freeze(
                [g for mm in maps if mm for g in mm.groups],
                f"{node.name} concatenates a dynamic size",
            )
            state.set_map(node, None)
            return
        if m is None:
            segs.append(Seg(None, offset, size))
        else:
            segs.extend(replace(s, start=s.start + offset) for s in m.segs)
        offset += size
    state.set_map(node, ChannelMap(dim, tuple(segs)))


@HANDLERS.handles(aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)
def _split(state: WalkState, node: fx.Node) -> None:
    """Splits along the channels hand each part the runs inside it, after folding or
    dividing the groups whose runs cross an edge. The part sizes are width-encoding
    arguments."""
    m = state.map_of(positional(node, 0))
    vals = node.meta.get("val")
    if m is None or not isinstance(vals, (list, tuple)):
        state.set_map(node, None)
        return
    ndim = state.ndim(positional(node, 0)) or 0
    dim = norm_dim(int(argument(node, 2, "dim", 0)), ndim)
    if dim != m.dim:
        state.parts[node.name] = [m] * len(vals)
        state.set_map(node, m)
        return
    sizes = [v.shape[dim] for v in vals]
    if not all(isinstance(n, int) for n in sizes):
        state.freeze(m.groups, f"{node.name} splits these channels into dynamic sizes")
        state.set_map(node, None)
        return
    edges = [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]
    if any(s.start < e < s.end for s in m.segs for e in edges):
        if _one_run(m, sizes):  # a fused projection's parts
            m = _folded(state, node, m, sizes)
        else:  # runs interleaved by a shuffle: each part's channels are groups of their own
            m = divide_at_edges(state, node.name, positional(node, 0), edges)
        if m is None:
            state.set_map(node, None)
            return
    parts: list[ChannelMap | None] = []
    begin = 0
    for i, size in enumerate(sizes):
        inside = [s for s in m.segs if begin <= s.start and s.end <= begin + size]
        for seg in inside:
            if seg.group is not None:
                state.group(seg.group).arg_fixes.append(
                    ArgFix(node.name, OUTPUT_SIZES, i, seg.block)
                )
        rebased = tuple(replace(s, start=s.start - begin) for s in inside)
        parts.append(ChannelMap(dim, rebased) if rebased else None)
        begin += size
    state.parts[node.name] = parts
    state.set_map(node, None)


def _one_run(m: ChannelMap, sizes: list[int]) -> bool:
    """One layer's channels, back to back, split into equal parts."""
    seg = m.segs[0]
    whole = len(m.segs) == 1 and seg.group is not None and seg.start == 0
    return whole and not seg.interleaved and len(set(sizes)) == 1 and seg.end == sum(sizes)


def _folded(state: WalkState, node: fx.Node, m: ChannelMap, sizes: list[int]) -> ChannelMap | None:
    """One layer's channels split into equal parts (a fused qkv projection's q, k and v):
    channel c of every part is cut together (`regroup.fold_parts`). None if it cannot be."""
    seg = m.segs[0]
    assert seg.group is not None
    if fold_parts(state, seg.group, len(sizes), node.name):
        return state.map_of(positional(node, 0))
    return None


@HANDLERS.handles(aten.unbind.int)
def _unbind(state: WalkState, node: fx.Node) -> None:
    """`unbind` along another dim (the q, k, v parts of a fused projection, folded into
    one group by the view before): every part carries the channels, one dim lower."""
    m = state.map_of(positional(node, 0))
    vals = node.meta.get("val")
    ndim = state.ndim(positional(node, 0)) or 0
    dim = norm_dim(int(argument(node, 1, "dim", 0)), ndim)
    if m is None or not isinstance(vals, (list, tuple)):
        state.set_map(node, None)
        return
    if dim == m.dim:
        state.freeze(m.groups, f"{node.name} takes these channels apart one by one")
        state.set_map(node, None)
        return
    state.parts[node.name] = [m.moved(m.dim - (1 if dim < m.dim else 0))] * len(vals)
    state.set_map(node, None)


@HANDLERS.handles(operator.getitem)
def _getitem(state: WalkState, node: fx.Node) -> None:
    """One output of a split (its own map), or of a multi-output op."""
    src, index = node.args
    parts = state.parts.get(src.name) if isinstance(src, fx.Node) else None
    if parts is not None:  # one map per output (a split)
        state.set_map(node, parts[int(index)])  # type: ignore[arg-type]
        return
    # Multi-output ops (BatchNorm, max-pool with indices) put the channels in output 0.
    state.set_map(node, state.map_of(src) if index == 0 else None)
    if index != 0:
        state.freeze_map(src, f"{node.name} uses a secondary output of {src}")
