"""Copies of an unlifted module for surgery, and tensors replaced in one.

Surgery replaces tensors (it never writes into them), so a candidate that is only cut,
evaluated and exported can share the weights it keeps with the original: copying the
whole model for every candidate costs a model's worth of memory traffic and time.
A candidate that will be trained, or a graph that writes into a parameter, gets its own.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import fx

from pruning.graph import owner_of


def clone_module(gm: fx.GraphModule, *, share_parameters: bool = False) -> fx.GraphModule:
    """A deep copy of an unlifted module.

    Args:
        gm: the module (not modified).
        share_parameters: the copy's parameters are new `Parameter` objects over the same
            storage as `gm`'s (moving the copy to a device, or replacing a parameter, leaves
            `gm` alone; writing into one would not, so callers that train must not share).
            Buffers are always copied: forwards may write into them.

    torch 2.13 emits a FutureWarning about its own pytree specs when they are copied; it
    says nothing to a user, so it is silenced here.
    """
    memo: dict[int, object] = {}
    if share_parameters and not writes_parameters(gm):
        for p in gm.parameters():
            memo[id(p)] = torch.nn.Parameter(p.detach(), requires_grad=p.requires_grad)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*LeafSpec.*is deprecated", category=FutureWarning
        )
        return copy.deepcopy(gm, memo)


def writes_parameters(gm: fx.GraphModule) -> bool:
    """Whether the graph calls a mutating op on a parameter (then no copy may share it)."""
    names = {name for name, _ in gm.named_parameters()}
    for node in gm.graph.nodes:
        schema = getattr(node.target, "_schema", None)
        if node.op != "call_function" or schema is None or not schema.is_mutable:
            continue
        if any(
            isinstance(a, fx.Node) and a.op == "get_attr" and a.target in names for a in node.args
        ):
            return True
    return False


def set_tensor(gm: fx.GraphModule, path: str, value: torch.Tensor, *, copy: bool = True) -> None:
    """Replace a parameter or buffer, keeping its kind.

    Args:
        copy: False when `value` is a fresh tensor nobody else holds (it is then taken as
            it is, saving a copy of the layer).
    """
    owner, attr = owner_of(gm, path)
    fresh = value.detach().clone() if copy else value.detach()
    if attr in owner._parameters:
        old = owner._parameters[attr]
        owner._parameters[attr] = torch.nn.Parameter(
            fresh, requires_grad=bool(old is not None and old.requires_grad)
        )
    elif attr in owner._buffers:
        owner._buffers[attr] = fresh
    else:
        setattr(owner, attr, fresh)
