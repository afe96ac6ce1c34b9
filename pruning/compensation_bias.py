"""Where compensation goes: the bias of each layer that reads a cut group.

Compensation (`pruning.compensation`) folds what removed neurons contributed into the bias of
the layers that read them. A layer without a bias gets a zero one first: a parameter beside
its weight, passed to the layer's op, or, for a decomposed Linear (`mm`/`bmm` over W.T, which
takes no bias), an `add` after the product.
"""

from __future__ import annotations

import torch
from torch import fx

from pruning.graph import Consumer, get_tensor
from pruning.graph import owner_of as _owner

__all__ = ["ensure_bias"]


# A decomposed Linear without bias (`mm`, `bmm` over W.T): compensation adds one after it.
_PRODUCTS = (torch.ops.aten.mm.default, torch.ops.aten.bmm.default)


def ensure_bias(gm: fx.GraphModule, consumer: Consumer) -> str:
    """A consumer without bias gets a zero bias parameter, so compensation has a place to go."""
    if consumer.bias is not None:
        return consumer.bias
    node = next(n for n in gm.graph.nodes if n.name == consumer.node)
    if node.target in _PRODUCTS or _computed_bias(node):
        return _bias_after_product(gm, node, consumer)
    path = consumer.weight.path.removesuffix(".weight") + ".bias"
    owner, attr = _owner(gm, path)
    if attr in owner._parameters:
        return path  # made for another group this consumer reads
    weight = get_tensor(gm, consumer.weight.path)
    zeros = torch.zeros(weight.shape[consumer.out_dim], dtype=weight.dtype, device=weight.device)
    owner.register_parameter(attr, torch.nn.Parameter(zeros))
    with gm.graph.inserting_before(node):
        bias_node = gm.graph.get_attr(path)
    args = list(node.args) + [None] * max(0, 3 - len(node.args))
    args[2] = bias_node
    node.args = tuple(args)
    node.kwargs = {k: v for k, v in node.kwargs.items() if k != "bias"}
    return path


def _computed_bias(node: fx.Node) -> bool:
    """A layer whose bias is computed (a part of a stored vector, as `nn.MultiheadAttention`
    with `kdim`/`vdim` takes it from `in_proj_bias`): compensation goes after the layer."""
    bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
    return isinstance(bias, fx.Node) and bias.op != "get_attr"


def _bias_after_product(gm: fx.GraphModule, node: fx.Node, consumer: Consumer) -> str:
    """`x @ W.T` (or a Linear whose bias is computed) becomes `x @ W.T + b`, b a new zero
    vector (one per product, reused by every group it reads): an `add` after the product,
    its users reading the sum."""
    for user in node.users:
        if user.target is torch.ops.aten.add.Tensor and user.meta.get("compensation_bias"):
            return str(user.args[1].target)  # type: ignore[union-attr]
    # Beside the weight, in its module (the root's own, for `F.linear(x, self.w)`).
    owner, name = _owner(gm, consumer.weight.path)
    prefix = consumer.weight.path.removesuffix(name)
    attr = "bias" if name == "weight" else f"{name}_bias"
    n = 0
    while hasattr(owner, attr):  # the layer's own bias is applied elsewhere: a fresh name
        n += 1
        attr = f"{name}_compensation_bias_{n}"
    path = prefix + attr
    weight = get_tensor(gm, consumer.weight.path)
    zeros = torch.zeros(weight.shape[consumer.out_dim], dtype=weight.dtype, device=weight.device)
    owner.register_parameter(attr, torch.nn.Parameter(zeros))
    with gm.graph.inserting_after(node):
        bias_node = gm.graph.get_attr(path)
    with gm.graph.inserting_after(bias_node):
        add = gm.graph.call_function(torch.ops.aten.add.Tensor, (node, bias_node))
    add.meta["compensation_bias"] = True
    node.replace_all_uses_with(add, delete_user_cb=lambda user: user is not add)
    return path
