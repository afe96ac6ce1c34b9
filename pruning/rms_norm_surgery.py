"""What a cut changes in the RMS norms its groups pass (found by `pruning.graph.rms_norm`).

An RMSNorm's mean of squares divides by the width C. Once channels are cut, the mean of the
C' that stay divides by C', while the original, with those channels zeroed, divided the
same sum by C. Keeping C makes the cut equal to zeroing them where the norm reads them:
- a hand-written `mean` over the channels becomes their `sum`, then a division by C;
- an `rms_norm` op divides by its own width, so it is compensated instead:
  x * rsqrt(s / C + eps) = sqrt(C / C') * x * rsqrt(s / C' + eps * C / C'), i.e. its weight
  is scaled by sqrt(C / C') (a norm without weight gets a multiplication after it) and its
  eps by C / C'.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from pruning.errors import UnsupportedModel
from pruning.graph import ChannelGroup, get_tensor
from pruning.module_copy import set_tensor

aten = torch.ops.aten


def keep_rms_divisors(gm: fx.GraphModule, cuts: list[tuple[ChannelGroup, list[int]]]) -> None:
    """Rewrite, in `gm` (already cut), every RMS norm that lost channels.

    Args:
        gm: the module being cut; its norms' weights are sliced already.
        cuts: each cut group with its removed channels.

    Raises:
        UnsupportedModel: one weight serves two norms that lost different numbers of channels.
    """
    removed: dict[str, int] = {}
    counts: dict[str, int] = {}
    for group, gone in cuts:
        for renorm in group.renorms:
            removed[renorm.node] = removed.get(renorm.node, 0) + len(gone) * renorm.block
            counts[renorm.node] = renorm.count
    nodes = {n.name: n for n in gm.graph.nodes}
    scaled: dict[str, float] = {}  # weight path -> factor, for a weight two norms share
    for name, amount in removed.items():
        node = nodes[name]
        if node.target is aten.mean.dim:
            _sum_over(gm, node, counts[name])
        else:
            _rescale(gm, node, counts[name] / (counts[name] - amount), scaled)


def _sum_over(gm: fx.GraphModule, node: fx.Node, count: int) -> None:
    """mean(x, dims) -> sum(x, dims) / count: the same arguments, the original divisor."""
    node.target = aten.sum.dim_IntList
    with gm.graph.inserting_after(node):
        divided = gm.graph.call_function(aten.div.Scalar, (node, count))
    divided.meta = dict(node.meta)
    node.replace_all_uses_with(divided, delete_user_cb=lambda user: user is not divided)


def _rescale(gm: fx.GraphModule, node: fx.Node, ratio: float, scaled: dict[str, float]) -> None:
    """An `rms_norm` that lost channels: eps times C / C', its output times sqrt(C / C')."""
    args: list[Any] = list(node.args) + [None] * max(0, 4 - len(node.args))
    for i, key in ((2, "weight"), (3, "eps")):
        if key in node.kwargs:
            args[i] = node.kwargs[key]
    source = args[0]
    assert isinstance(source, fx.Node)
    # Without eps, torch uses the machine epsilon of the input's dtype.
    eps = args[3] if args[3] is not None else torch.finfo(source.meta["val"].dtype).eps
    args[3] = float(eps) * ratio
    node.args, node.kwargs = tuple(args), {}
    factor = math.sqrt(ratio)
    weight = args[2]
    if weight is None:
        with gm.graph.inserting_after(node):
            scaled_out = gm.graph.call_function(aten.mul.Scalar, (node, factor))
        scaled_out.meta = dict(node.meta)
        node.replace_all_uses_with(scaled_out, delete_user_cb=lambda user: user is not scaled_out)
        return
    assert isinstance(weight, fx.Node)
    path = str(weight.target)
    if path in scaled:
        if not math.isclose(scaled[path], factor):
            raise UnsupportedModel(f"{path} serves RMS norms cut to different widths")
        return
    scaled[path] = factor
    tensor = get_tensor(gm, path)
    set_tensor(gm, path, tensor * factor, copy=False)
