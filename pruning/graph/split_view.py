"""Views that split the channel dim: attention heads, fused q/k/v parts, channel groups.

A view of (..., C, ...) as (..., a, b, ...) with a * b == C puts each channel at a pair of
positions. One of the new dims is kept as the tracked one; the others become part of the
group's unit (`regroup`):

- the dims after it are *coarsened* into the unit: `(heads, head_dim)` keeps the heads,
  and a head's head_dim channels are cut together;
- the dims before it are *folded* into parts: `(3, E)` of a fused in-projection keeps E,
  and channel c of q, k and v is cut together.

The tracked dim is the first new dim that is not indexed later (`select`, `unbind`,
`split` along it, as the q/k/v parts are): (heads, head_dim) tracks the heads,
(3, heads, head_dim) and (3, E) the dim after the 3.

`nn.MultiheadAttention` also merges the heads into the batch: (L, N, E) becomes
(L, N * heads, head_dim), and a decomposed program views (N, heads, T, head_dim) as
(N * heads, T, head_dim) for `bmm`. The result has a `period` (the heads repeat once per
sample) until a later view splits (N * heads) back into (N, heads).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import sympy
import torch
from torch import fx

from pruning.graph.dims import indexed_later, shape_product
from pruning.graph.groups import ArgFix
from pruning.graph.regroup import coarsen, fold_parts
from pruning.graph.tracking import ChannelMap, Seg, WalkState

aten = torch.ops.aten

# Where a view's sizes are: (argument index, what to add to an output dim to index them).
SizesAt = tuple[int, int]


def split_channels(
    state: WalkState,
    node: fx.Node,
    m: ChannelMap,
    src: tuple[Any, ...],
    out: tuple[Any, ...],
    sizes_at: SizesAt,
) -> ChannelMap | None:
    """The map after a view that splits the channel dim; None if it cannot be followed
    (the caller freezes). Regroups the group as the split needs."""
    d, size = m.dim, src[m.dim]
    if not isinstance(size, int):
        return None
    if len(m.segs) > 1:
        return _one_part_each(state, node, m, src, out, sizes_at)
    seg = m.segs[0]
    if seg.group is None or seg.start != 0 or seg.width * seg.block != size:
        return None
    pre, post = shape_product(src[:d]), shape_product(src[d + 1 :])
    for j in range(len(out)):
        for k in range(j, len(out)):
            new = out[j : k + 1]
            if not all(isinstance(n, int) for n in new):
                break
            if shape_product(out[k + 1 :]) != post:
                continue
            n = math.prod(new)
            if n == size and k > j and shape_product(out[:j]) == pre:
                return _split(state, node, seg, out, j, k, sizes_at)
            if j > 0 and n < size and size % n == 0:
                heads = sympy.simplify(shape_product(out[:j]) / pre)
                if heads.is_Integer and int(heads) == size // n:
                    return _split_into_batch(state, node, seg, out, j, n, sizes_at)
    return None


def _one_part_each(
    state: WalkState,
    node: fx.Node,
    m: ChannelMap,
    src: tuple[Any, ...],
    out: tuple[Any, ...],
    at: SizesAt,
) -> ChannelMap | None:
    """(..., F * D, ...) viewed as (..., F, D, ...) where each of the F parts holds one
    run of channels laid out alike, and no swap follows (a channel shuffle is followed
    as a permutation instead, `shuffle`): the runs are united, so that position c of
    every part is one channel, kept along D."""
    d = m.dim
    parts, part = len(m.segs), int(src[d]) // len(m.segs)
    first = m.segs[0]
    for j in range(len(out) - 1):
        if (out[j], out[j + 1]) != (parts, part) or shape_product(out[:j]) != shape_product(
            src[:d]
        ):
            continue
        if shape_product(out[j + 2 :]) != shape_product(src[d + 1 :]):
            continue
        alike = all(
            s.group is not None
            and s.start == i * part
            and (s.width, s.block) == (first.width, first.block)
            and s.width * s.block == part
            for i, s in enumerate(m.segs)
        )
        if not alike:
            return None
        for s in m.segs[1:]:
            assert first.group is not None and s.group is not None
            state.union(first.group, s.group, node.name)
        seg = Seg(first.group, 0, first.width, first.block)
        _fix_size(state, node, seg, out[j + 1], at, j + 1)
        return ChannelMap(j + 1, (seg,))
    return None


def _split(
    state: WalkState, node: fx.Node, seg: Seg, out: tuple[Any, ...], j: int, k: int, at: SizesAt
) -> ChannelMap | None:
    """Dims j..k of the output are the channel dim's: keep one, regroup with the others."""
    t = next((t for t in range(j, k) if not indexed_later(node, t)), k)
    outer, kept, inner = math.prod(out[j:t]), int(out[t]), math.prod(out[t + 1 : k + 1])
    new = _regroup(state, node, seg, outer, kept, inner)
    if new is None:
        return None
    _fix_size(state, node, new, out[t], at, t)
    return ChannelMap(t, (new,))


def _split_into_batch(
    state: WalkState, node: fx.Node, seg: Seg, out: tuple[Any, ...], j: int, inner: int, at: SizesAt
) -> ChannelMap | None:
    """(..., N, C) viewed as (..., N * heads, head_dim, ...): dims from j on hold `inner`
    positions of each head, and dim j - 1 holds N * heads."""
    heads = seg.width * seg.block // inner
    new = _regroup(state, node, seg, 1, heads, inner)
    if new is None or not _fix_batch_size(state, node, new, out[j - 1], heads, at, j - 1):
        return None
    return ChannelMap(j - 1, (new,), period=heads)


def _regroup(
    state: WalkState, node: fx.Node, seg: Seg, outer: int, kept: int, inner: int
) -> Seg | None:
    """Fold `outer` parts and coarsen `inner` positions into a unit, so that the kept dim
    holds whole units; the seg along it, or None."""
    assert seg.group is not None
    if seg.width % outer:
        return None
    width = seg.width // outer
    if inner % seg.block == 0:
        factor = inner // seg.block
        if width % factor or width // factor != kept:
            return None
        if not (
            fold_parts(state, seg.group, outer, node.name)
            and coarsen(state, seg.group, factor, node.name)
        ):
            return None
        return Seg(seg.group, 0, kept, 1)
    if seg.block % inner == 0 and width * (seg.block // inner) == kept:
        if not fold_parts(state, seg.group, outer, node.name):
            return None
        return Seg(seg.group, 0, width, seg.block // inner)
    return None


def unperiod(
    state: WalkState, node: fx.Node, m: ChannelMap, src: tuple[Any, ...], out: tuple[Any, ...]
) -> ChannelMap | None:
    """A view of a map with a period: (N * heads, ...) split back into (N, heads, ...), or
    a view that leaves the dim as it is. None otherwise."""
    d = m.dim
    head, tail = shape_product(src[: d + 1]), shape_product(src[d + 1 :])
    for j, n in enumerate(out):
        if shape_product(out[j + 1 :]) != tail:
            continue
        if shape_product(out[: j + 1]) == head and n == m.period:
            sizes = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(sizes, (list, tuple)) and isinstance(sizes[j], int)):
                return None
            for seg in m.segs:
                if seg.group is not None:
                    state.group(seg.group).arg_fixes.append(ArgFix(node.name, 1, j, seg.block))
            return ChannelMap(j, m.segs)
        if j == d and shape_product(out[:j]) == shape_product(src[:d]) and out[j] == src[d]:
            return m if _symbolic(out[j]) else None
    return None


def merge_into_batch(
    state: WalkState, node: fx.Node, m: ChannelMap, src: tuple[Any, ...], out: tuple[Any, ...]
) -> ChannelMap | None:
    """(N, heads, ...) viewed as (N * heads, ...), as a decomposed program does for `bmm`:
    the heads repeat once per sample along the merged dim (a `period`). None otherwise."""
    d, size = m.dim, src[m.dim]
    if d == 0 or d == len(src) - 1 or not isinstance(size, int):
        return None  # merged into the features (the last dim), heads are no batch
    for j in range(d):
        if shape_product(out[: j + 1]) != shape_product(src[: d + 1]):
            continue
        if shape_product(out[j + 1 :]) != shape_product(src[d + 1 :]):
            continue
        for seg in m.segs:
            if seg.group is not None and not _fix_batch_size(
                state, node, seg, out[j], size, (1, 0), j
            ):
                return None
        return ChannelMap(j, m.segs, period=size)
    return None


def _symbolic(n: Any) -> bool:
    return isinstance(n, torch.SymInt)


def _fix_size(state: WalkState, node: fx.Node, seg: Seg, size: Any, at: SizesAt, item: int) -> None:
    """The kept dim's literal size in the view's arguments shrinks with the cut."""
    sizes = node.args[at[0]] if len(node.args) > at[0] else None
    given = sizes[at[1] + item] if isinstance(sizes, (list, tuple)) else None
    if isinstance(given, int) and given > 0:
        assert seg.group is not None
        state.group(seg.group).arg_fixes.append(ArgFix(node.name, at[0], at[1] + item, seg.block))


def _fix_batch_size(
    state: WalkState, node: fx.Node, seg: Seg, size: Any, heads: int, at: SizesAt, item: int
) -> bool:
    """N * heads in the view's sizes shrinks with the cut: a literal by N per head, or the
    `heads` factor of an `operator.mul` node (see `ArgFix`). False if neither is there."""
    assert seg.group is not None
    sizes = node.args[at[0]] if len(node.args) > at[0] else None
    if not isinstance(sizes, (list, tuple)):
        return False
    given = sizes[at[1] + item]
    group = state.group(seg.group)
    if isinstance(given, int) and given > 0 and isinstance(size, int):
        group.arg_fixes.append(ArgFix(node.name, at[0], at[1] + item, size // heads * seg.block))
        return True
    product = isinstance(given, fx.Node) and given.target is operator.mul
    if product and any(isinstance(f, int) and f == heads for f in given.args):
        group.arg_fixes.append(ArgFix(node.name, at[0], at[1] + item, seg.block))
        return True
    return False
