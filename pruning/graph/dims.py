"""Following dims through shapes: comparable shape prefixes, and where a dim goes.

`shape_product` makes prefixes of shapes comparable across views, symbolic sizes
included; `indexed_later` looks ahead through ops that only move dims, to tell a dim that
holds parts (q, k and v, selected one by one) from one that holds channels.
"""

from __future__ import annotations

from typing import Any

import sympy
import torch
from torch import fx

from pruning.graph.registry import argument, norm_dim, positional

aten = torch.ops.aten


def shape_product(dims: tuple[Any, ...]) -> sympy.Expr:
    """A prefix of a shape, comparable across views: the product of its sizes as a sympy
    expression, so that (s0, 5) and the (5*s0,) of a decomposed program's view are equal."""
    return sympy.Mul(*(_expr(d) for d in dims))


def _expr(d: Any) -> sympy.Expr:
    if isinstance(d, torch.SymInt):
        return sympy.sympify(d.node.expr)
    return sympy.Integer(int(d))


# -- which new dims are indexed later ------------------------------------------------------
_INDEXING = (aten.select.int, aten.unbind.int, aten.slice.Tensor)  # a decomposed unbind slices
_SPLITS = (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)
# Ops that copy a tensor as it is, and views that only reshape it.
COPIES = (aten.contiguous.default, aten.clone.default, aten.alias.default)
VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)


def indexed_later(node: fx.Node, dim: int) -> bool:
    """True if a user of `node`, through ops that only move dims, selects, unbinds or
    splits along `dim`: then it holds parts (q, k, v), not channels."""
    for user in node.users:
        if user.target in _INDEXING or user.target in _SPLITS:
            ndim = _ndim(node)
            at = 1 if user.target in _INDEXING else 2
            if norm_dim(int(argument(user, at, "dim", 0)), ndim) == dim:
                return True
            continue
        moved = _moved(user, dim)
        if moved is not None and indexed_later(user, moved):
            return True
    return False


def _moved(user: fx.Node, dim: int) -> int | None:
    """Where `dim` of the input is in `user`'s output, for ops that only move dims."""
    src = user.args[0]
    ndim = _ndim(src) if isinstance(src, fx.Node) else 0
    if user.target in COPIES:
        return dim
    if user.target is aten.permute.default:
        order = [norm_dim(int(i), ndim) for i in positional(user, 1)]
        return order.index(dim)
    if user.target is aten.transpose.int:
        a, b = (norm_dim(int(positional(user, i)), ndim) for i in (1, 2))
        return b if dim == a else a if dim == b else dim
    if user.target is aten.unsqueeze.default:
        at = norm_dim(int(positional(user, 1)), ndim + 1)
        return dim + (1 if at <= dim else 0)
    if user.target in (aten.squeeze.dim, aten.squeeze.dims):
        given = positional(user, 1)
        gone = [
            norm_dim(int(g), ndim) for g in (given if isinstance(given, (list, tuple)) else [given])
        ]
        return None if dim in gone else dim - sum(g < dim for g in gone)
    return None


def _ndim(node: Any) -> int:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return val.dim() if isinstance(val, torch.Tensor) else 0
