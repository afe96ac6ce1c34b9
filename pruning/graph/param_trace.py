"""Stored tensors seen through reshapes: which dim of a parameter holds a tracked dim.

A tensor that meets tracked channels elementwise can be cut with them when it is a stored
tensor, or one read through ops that only move, broadcast or gather along other dims: a
position embedding broadcast by `expand`, Swin's relative position bias (a table of
(positions, heads) gathered by an index buffer, viewed, permuted and unsqueezed before it
is added to the attention scores of each head). `stored_source` follows such a chain back
and says which dim of the stored tensor the channels are on, and which literal sizes on the
way spell their count.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from pruning.graph.dims import shape_product
from pruning.graph.groups import ParamSlice, Span
from pruning.graph.registry import argument, norm_dim, positional
from pruning.graph.tracking import WalkState

aten = torch.ops.aten

_AS_IS = (aten.contiguous.default, aten.clone.default, aten.alias.default, aten.detach.default)
_RESHAPES = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
_EXPANDS = (aten.expand.default, aten.expand_as.default)


@dataclass
class Source:
    """A stored tensor (`path`) whose dim `dim` holds the channels; `sizes`: (node, item) of
    the literal sizes along them on the way, which shrink with a cut."""

    path: str
    dim: int
    sizes: list[tuple[str, int]] = field(default_factory=list)


def stored_source(state: WalkState, value: Any, dim: int) -> Source | None:
    """The stored tensor behind `value` and its dim that is `value`'s `dim`, or None."""
    sizes: list[tuple[str, int]] = []
    while isinstance(value, fx.Node):
        path = state.attr(value)
        if path is not None:
            return Source(path, dim, sizes)
        src = value.args[0] if value.args else None
        step = _step_back(state, value, src, dim, sizes)
        if step is None:
            return None
        value, dim = src, step
    return None


def _step_back(
    state: WalkState, node: fx.Node, src: Any, dim: int, sizes: list[tuple[str, int]]
) -> int | None:
    """The dim of `src` that is `node`'s `dim`, or None if the op mixes or makes it."""
    shape, before = state.shape(node), state.shape(src)
    if shape is None or before is None:
        return None
    t = node.target
    if t in _AS_IS:
        return dim
    if t is aten.permute.default:
        return norm_dim(int(positional(node, 1)[dim]), len(before))
    if t is aten.transpose.int:
        a, b = (norm_dim(int(positional(node, i)), len(before)) for i in (1, 2))
        return b if dim == a else a if dim == b else dim
    if t is aten.unsqueeze.default:
        at = norm_dim(int(positional(node, 1)), len(shape))
        return None if at == dim else dim - (1 if at < dim else 0)
    if t in _EXPANDS or t in _RESHAPES:
        d = _same_dim(shape, before, dim, aligned_right=t in _EXPANDS)
        given: Any = positional(node, 1) if t is not aten.expand_as.default else None
        literal = isinstance(given, (list, tuple)) and isinstance(given[dim], int)
        if d is not None and literal and int(given[dim]) > 0:
            sizes.append((node.name, dim))
        return d
    if t is aten.index.Tensor:
        return _indexed(state, node, before, dim)
    return None


def _same_dim(
    shape: tuple[Any, ...], before: tuple[Any, ...], dim: int, aligned_right: bool
) -> int | None:
    """The input dim that a broadcast (aligned right) or a view leaves `dim` as."""
    if aligned_right:
        d = dim - (len(shape) - len(before))
        return d if d >= 0 and before[d] == shape[dim] else None
    for d, n in enumerate(before):
        if n == shape[dim] and shape_product(before[:d]) == shape_product(shape[:dim]):
            return d
    return None


def _indexed(state: WalkState, node: fx.Node, before: tuple[Any, ...], dim: int) -> int | None:
    """`table[idx]`: one index tensor gathering along dim 0; the table's other dims follow
    the index's dims in the output."""
    indices = node.args[1]
    if not isinstance(indices, (list, tuple)) or len(indices) != 1:
        return None
    k = state.ndim(indices[0])
    if k is None or dim < k:
        return None
    return dim - k + 1


@dataclass(frozen=True)
class StoredPart:
    """Part `index` of a stored vector cut into equal parts (`chunk`/`split` along dim 0):
    `nn.MultiheadAttention` with `kdim`/`vdim` takes each projection's bias so from
    `in_proj_bias`. Its entries start at `offset`."""

    path: str
    offset: int
    split: str  # the node that splits it: every part's group is cut alike (equal parts)


def stored_part(state: WalkState, value: Any) -> StoredPart | None:
    """The stored vector part behind `value`, or None."""
    if not (isinstance(value, fx.Node) and value.target is operator.getitem):
        return None
    split, index = value.args
    if not isinstance(split, fx.Node) or split.target not in _EQUAL_SPLITS:
        return None
    path = state.attr(positional(split, 0))
    shape = state.shape(value)
    if path is None or shape is None or len(shape) != 1 or not isinstance(shape[0], int):
        return None
    whole = state.shape(positional(split, 0))
    if whole is None or len(whole) != 1 or norm_dim(int(argument(split, 2, "dim", 0)), 1) != 0:
        return None
    parts = split.meta.get("val")
    if not isinstance(parts, (list, tuple)) or len({tuple(p.shape) for p in parts}) != 1:
        return None  # unequal parts could not stay in step after a cut
    return StoredPart(path, int(index) * int(shape[0]), split.name)  # type: ignore[arg-type]


_EQUAL_SPLITS = (torch.ops.aten.chunk.default, torch.ops.aten.split.Tensor)


def produce_part(state: WalkState, node: fx.Node, gid: int, part: StoredPart) -> None:
    """The bias part is sliced with the rows. Every part of one split is cut alike, so the
    parts stay equal (`chunk` keeps its count): their groups are united."""
    group = state.group(gid)
    bias = ParamSlice(part.path, Span(0, part.offset))
    if bias not in group.producers:
        group.producers.append(bias)
    first = state.split_parts.setdefault(part.split, gid)
    state.union(first, gid, f"{node.name} (its bias is a part of {part.path})")
