"""Attention: heads of q, k and v cut together, as one unit per head.

After a view splits a projection's channels into (heads, head_dim) (`split_view`), q, k and
v carry their heads on a batch dim of the attention. Head h of the output reads only head
h of q, k and v, so the three groups are united: a head is cut from the q, k and v
projections' rows and the output projection's columns, and a cut equals zeroing that
head's output where the output projection reads it.

- `scaled_dot_product_attention`: q, k and v must all carry heads on the same dim. With
  grouped-query attention (`enable_gqa`, or k and v repeated by `expand` + `reshape`) a
  key/value head is cut only with the query heads that share it: the query heads are
  coarsened into units of that many.
- The explicit form, `softmax(q @ k^T) @ v`: the products (`matmul`) unite their operands'
  heads (`couple_heads`), and softmax, masks and scaling leave the heads where they are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import fx

from pruning.graph.coupling import broadcasts_over, slice_stored
from pruning.graph.registry import HandlerTable, argument, norm_dim, opaque, positional
from pruning.graph.regroup import align
from pruning.graph.tracking import ChannelMap, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()


def couple_heads(
    state: WalkState, node: fx.Node, operands: list[Any], repeats: list[int] | None = None
) -> ChannelMap | None:
    """Unite the heads that `operands` carry on one batch dim of `node`; the map of the
    first operand after that, or None if their layouts cannot agree. `repeats`: how many
    times the op repeats each head of an operand in a row (grouped-query attention)."""
    reps = repeats or [1] * len(operands)

    def read() -> list[ChannelMap | None]:
        return [_repeated(state.map_of(x), r) for x, r in zip(operands, reps, strict=True)]

    maps = read()
    first = maps[0]
    if first is None or any(m is None or m.dim != first.dim for m in maps):
        return None
    for i in range(1, len(maps)):
        first, other = read()[0], read()[i]  # regrouping rewrites the maps
        assert first is not None and other is not None
        if not align(state, first, other, node.name):
            return None
    first, *others = read()
    assert first is not None
    for other in others:
        assert other is not None
        for s1, s2 in zip(first.segs, other.segs, strict=True):
            if s1.group is None or s2.group is None:
                return None
            state.union(s1.group, s2.group, node.name)
    for seg in first.segs:
        if seg.group is not None:
            g = state.group(seg.group)
            g.kind = "head"
            g.heads_per_unit = max(g.heads_per_unit, seg.block)
    return first


def _repeated(m: ChannelMap | None, times: int) -> ChannelMap | None:
    if m is None or times == 1:
        return m
    return replace(
        m, segs=tuple(replace(s, start=s.start * times, block=s.block * times) for s in m.segs)
    )


@HANDLERS.handles(aten.scaled_dot_product_attention.default)
def _sdpa(state: WalkState, node: fx.Node) -> None:
    q, k, v = (positional(node, i) for i in range(3))
    mask = argument(node, 3, "attn_mask")
    maps = [state.map_of(x) for x in (q, k, v)]
    if all(m is None for m in maps) and state.map_of(mask) is None:
        state.set_map(node, None)
        return
    nd = state.ndim(q) or 0
    if state.map_of(mask) is not None:
        opaque(state, node, "an attention mask carries these channels")
        return
    if any(m is None or m.dim >= nd - 2 for m in maps):
        opaque(state, node, "attention over channels that are not whole heads of q, k and v")
        return
    ratio = _kv_ratio(state, node, q, k)
    out = None if ratio is None else couple_heads(state, node, [q, k, v], [1, ratio, ratio])
    if out is None:
        opaque(state, node, "q, k and v lay out their heads differently")
        return
    # A mask per head must lose the cut heads too: a stored one is sliced with them;
    # one computed otherwise (MultiheadAttention's expanded key_padding_mask) cannot be.
    if mask is not None and not (
        broadcasts_over(state, mask, out.dim, nd) or slice_stored(state, mask, out, nd)
    ):
        opaque(state, node, "an attention mask that differs between heads")
        return
    state.set_map(node, out)


def _kv_ratio(state: WalkState, node: fx.Node, q: Any, k: Any) -> int | None:
    """How many query heads share each key/value head inside the op (`enable_gqa`: in a
    row, as `repeat_interleave` would repeat them); 1 without it, None if they cannot."""
    mq, mk = state.map_of(q), state.map_of(k)
    hq, hk = state.shape(q), state.shape(k)
    if mq is None or mk is None or hq is None or hk is None:
        return None
    nq, nk = hq[mq.dim], hk[mk.dim]
    if nq == nk:
        return 1
    if not argument(node, 7, "enable_gqa", False) or not isinstance(nq, int):
        return None
    return nq // nk if isinstance(nk, int) and nk and nq % nk == 0 else None


@HANDLERS.handles(aten.softmax.int, aten._softmax.default, aten.log_softmax.int)
def _softmax(state: WalkState, node: fx.Node) -> None:
    """Softmax over the keys leaves the heads where they are; over the channels it mixes."""
    src = positional(node, 0)
    m = state.map_of(src)
    if m is not None and norm_dim(int(positional(node, 1)), state.ndim(src) or 0) == m.dim:
        opaque(state, node, "a softmax over these channels mixes them")
        return
    state.set_map(node, m)


@HANDLERS.handles(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def _masked_fill(state: WalkState, node: fx.Node) -> None:
    """A mask (a causal one, say) that is the same for every channel leaves them alone."""
    src, mask = positional(node, 0), positional(node, 1)
    m = state.map_of(src)
    if m is None:
        if state.map_of(mask) is not None:
            opaque(state, node, "a mask carries these channels")
            return
        state.set_map(node, None)
        return
    out_ndim = state.ndim(node) or 0
    if state.map_of(mask) is not None or not broadcasts_over(state, mask, m.dim, out_ndim):
        opaque(state, node, "a mask that differs between these channels")
        return
    state.set_map(node, m)
