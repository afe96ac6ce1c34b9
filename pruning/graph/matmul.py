"""Matrix products: a decomposed Linear starts and reads groups as `aten.linear` does; a
product of two activations carries channels through its free dims.

After `run_decompositions()` a Linear is `addmm(bias, x, W.T)`, `mm(x, W.T)` (no bias, or
the bias added after it), or, for an input that is not contiguous, `bmm(x, view(expand(W.T)))`
followed by `add(..., bias)`. `W.T` is `permute(W, [1, 0])`, `t(W)` or `transpose(W, 0, 1)`
of a stored 2-D weight; a weight stored (in, out) and read as it is (`x @ W`, HF's GPT-2
`Conv1D`: `addmm(b, x, W)`) is a Linear too, its rows and columns swapped. The weight is
found through the transpose, so the group has the same producer rows and consumer columns
of W as in the un-decomposed program, and is named alike; sizes in the expand and view that
spell out W's two widths shrink with the cut.

A product of two activations (`bmm` in attention, say) passes the left operand's rows or the
right operand's columns through; where it sums over channels (q @ k^T), no layer's weight
reads them, so they freeze. A stored matrix on the left (`W @ x`) freezes too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from pruning.graph.attention import couple_heads
from pruning.graph.coupling import broadcasts_over
from pruning.graph.dims import VIEWS
from pruning.graph.groups import ArgFix
from pruning.graph.layers import consume, produce
from pruning.graph.registry import HandlerTable, argument, opaque, positional
from pruning.graph.tensor_paths import get_tensor
from pruning.graph.tracking import ChannelMap, WalkState

aten = torch.ops.aten
HANDLERS = HandlerTable()

_TRANSPOSES = (aten.permute.default, aten.t.default, aten.transpose.int)
# What a decomposed matmul puts between `W.T` and `bmm`: batch dims added in front, merged.
_BROADCASTS = (
    aten.expand.default,
    aten.view.default,
    aten._unsafe_view.default,
    aten.reshape.default,
    aten.clone.default,
    aten.contiguous.default,
)
# Between a matmul and the `add` of its bias: the batch dims split back out.


@dataclass
class _Weight:
    """A stored weight read as (in, out): an (out, in) one transposed (`out_dim` 0), or one
    stored (in, out) and read as it is (`out_dim` 1: HF's `Conv1D`, `x @ W`); and the size
    arguments that spell its widths on the way to the product: (node, item) of `in`, `out`."""

    path: str
    out: int
    in_: int
    out_dim: int = 0
    in_sizes: list[tuple[str, int]] = field(default_factory=list)
    out_sizes: list[tuple[str, int]] = field(default_factory=list)


@HANDLERS.handles(aten.addmm.default)
def _addmm(state: WalkState, node: fx.Node) -> None:
    bias, x, mat2 = positional(node, 0), positional(node, 1), positional(node, 2)
    weight = _weight(state, mat2)
    scaled = argument(node, 3, "beta", 1) != 1 or argument(node, 4, "alpha", 1) != 1
    if not isinstance(weight, _Weight) or scaled:
        opaque(state, node, "an addmm that is not a Linear layer (x @ W.T + b)")
        return
    bias_path = state.attr(bias)
    if bias_path is None or tuple(get_tensor(state.gm, bias_path).shape) != (weight.out,):
        opaque(state, node, "an addmm whose bias is not a stored vector of its width")
        return
    _linear(state, node, x, weight, bias_path, bias_path)


@HANDLERS.handles(aten.mm.default, aten.bmm.default, aten.matmul.default)
def _mm(state: WalkState, node: fx.Node) -> None:
    a, b = positional(node, 0), positional(node, 1)
    weight = _weight(state, b)
    if isinstance(weight, _Weight):
        _linear(state, node, a, weight, None, _bias_after(state, node, weight.out))
    elif isinstance(weight, str):
        opaque(state, node, f"a matrix product with {weight}")
    elif isinstance(_weight(state, a), (str, _Weight)):
        opaque(state, node, "a matrix product with a stored matrix on the left (W @ x)")
    else:
        _activations(state, node, a, b)


def _linear(
    state: WalkState,
    node: fx.Node,
    x: Any,
    weight: _Weight,
    bias: str | None,
    consumer_bias: str | None,
) -> None:
    """`x @ W.T` (+ bias): W's columns read x's channels, W's rows (and bias) are a group.

    `bias` is sliced with the rows; `consumer_bias` is where compensation goes (for `mm`,
    the stored vector added right after, which the `add` itself slices as it meets it).
    """
    m = state.map_of(x)
    if m is not None and m.period:  # features that repeat per sample are no weight's columns
        state.freeze(m.groups, f"{node.name} reads heads merged with other features")
        state.maps[x.name] = None
    in_dim = 1 - weight.out_dim
    consume(state, node, "linear", -1, weight.path, consumer_bias, src=x, in_dim=in_dim)
    m = state.map_of(x)
    if m is not None:
        for seg in m.segs:
            if seg.group is not None:
                state.group(seg.group).arg_fixes.extend(
                    ArgFix(name, 1, item, seg.block) for name, item in weight.in_sizes
                )
    dim = (state.ndim(node) or 2) - 1
    gid = produce(state, node, "linear", weight.path, bias, weight.out, dim, weight.out_dim)
    state.group(gid).arg_fixes.extend(ArgFix(name, 1, item) for name, item in weight.out_sizes)


def _weight(state: WalkState, value: Any) -> _Weight | str | None:
    """`_Weight` when `value` is W.T, or W, of a stored 2-D weight (through a broadcast);
    a reason when it is another stored tensor; None for an activation."""
    chain: list[fx.Node] = []
    while isinstance(value, fx.Node) and value.target in _BROADCASTS:
        chain.append(value)
        value = value.args[0]
    if not isinstance(value, fx.Node):
        return None
    path = state.attr(value)
    if path is not None:  # (in, out) as stored: `x @ W`
        stored = get_tensor(state.gm, path)
        if stored.dim() != 2:
            return "a stored tensor that is not a matrix"
        in_, out = (int(n) for n in stored.shape)
        weight = _Weight(path, out, in_, out_dim=1)
    else:
        if value.target not in _TRANSPOSES:
            return None
        path = state.attr(value.args[0])
        if path is None:
            return None
        stored = get_tensor(state.gm, path)
        if stored.dim() != 2 or not _swaps_2d(value):
            return "a stored tensor rearranged otherwise than W.T"
        out, in_ = (int(n) for n in stored.shape)
        weight = _Weight(path, out, in_)
    for link in chain:
        shape = state.shape(link)
        if shape is None or tuple(shape[-2:]) != (in_, out):
            return "a stored matrix reshaped across its widths"
        sizes = link.args[1] if len(link.args) > 1 else None
        if isinstance(sizes, (list, tuple)):
            n = len(sizes)
            if isinstance(sizes[n - 2], int) and sizes[n - 2] > 0:
                weight.in_sizes.append((link.name, n - 2))
            if isinstance(sizes[n - 1], int) and sizes[n - 1] > 0:
                weight.out_sizes.append((link.name, n - 1))
    return weight


def _swaps_2d(node: fx.Node) -> bool:
    """True if a transpose-like node turns a 2-D (out, in) tensor into (in, out)."""
    if node.target is aten.t.default:
        return True
    if node.target is aten.permute.default:
        return [int(d) % 2 for d in positional(node, 1)] == [1, 0]
    dims = {int(positional(node, 1)) % 2, int(positional(node, 2)) % 2}
    return dims == {0, 1}


def _bias_after(state: WalkState, node: fx.Node, width: int) -> str | None:
    """The stored bias added to a decomposed Linear's output (through views only), if any."""
    value = node
    while len(value.users) == 1:
        user = next(iter(value.users))
        if user.target in VIEWS:
            value = user
            continue
        if user.target is aten.add.Tensor:
            other = user.args[1] if user.args[0] is value else user.args[0]
            path = state.attr(other)
            if path is not None and tuple(get_tensor(state.gm, path).shape) == (width,):
                return path
        return None
    return None


def _activations(state: WalkState, node: fx.Node, a: Any, b: Any) -> None:
    """`a @ b` of two activations, (..., n, m) @ (..., m, p): rows of `a` and columns of `b`
    pass through, and so do heads on a batch dim (attention's q @ k^T and scores @ v:
    `attention.couple_heads`); channels summed over (m) cannot be followed."""
    ma, mb = state.map_of(a), state.map_of(b)
    nd = state.ndim(node) or 2
    rows, cols = nd - 2, nd - 1
    batched = [m for m in (ma, mb) if m is not None and m.dim < rows]
    if (ma is not None and ma.dim == cols) or (mb is not None and mb.dim == rows):
        opaque(
            state,
            node,
            "a product of two activations sums over these channels "
            "(attention scores); no layer's weight reads them there",
        )
    elif batched and (state.ndim(a) != nd or state.ndim(b) != nd):
        opaque(state, node, "a batched product that broadcasts over these channels")
    elif ma is not None and mb is not None:
        out = couple_heads(state, node, [a, b]) if len(batched) == 2 else None
        if out is None:
            opaque(state, node, "a product whose operands carry channels on different dims")
        else:
            state.set_map(node, out)
    elif ma is not None:
        _one_side(state, node, ma, b)
    elif mb is not None:
        _one_side(state, node, mb, a)
    else:
        state.set_map(node, None)


def _one_side(state: WalkState, node: fx.Node, m: ChannelMap, other: Any) -> None:
    """Only one operand carries channels: rows or columns pass; on a batch dim, the other
    operand must be the same for every channel (size 1 there)."""
    nd = state.ndim(node) or 2
    if m.dim >= nd - 2 or broadcasts_over(state, other, m.dim, nd):
        state.set_map(node, m)
    else:
        opaque(state, node, "a batched product over these channels")
