"""Channel shuffles after a cut: a gather of the kept positions, in shuffled order.

A shuffle views (N, C, ...) as (N, g, C / g, ...), which needs g parts of equal size;
after a cut the parts may keep different counts (`pruning.graph.shuffle`). Output
position j of the shuffle reads input position (j % g) * (C / g) + j // g. Keeping the
output positions whose input position is kept, in their order, is exactly the original
shuffle with the removed channels dropped: the shuffle (its views, swap and copies, or
`channel_shuffle`) becomes one `index_select` of the input with those positions, renumbered
among the kept ones. The index is a buffer of the module, so the program stays one export.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import fx

from pruning.graph import ChannelGroup

aten = torch.ops.aten

# (the shuffle's output node, its input node, dim, parts)
_Key = tuple[str, str, int, int]


def gather_shuffles(gm: fx.GraphModule, cuts: Iterable[tuple[ChannelGroup, list[int]]]) -> None:
    """Rewrite every shuffle that a cut group passes as a gather of the kept positions."""
    removed: dict[_Key, set[int]] = {}
    for group, gone in cuts:
        for s in group.shuffles:
            key = (s.node, s.source, s.dim, s.groups)
            removed.setdefault(key, set()).update(s.span.positions(gone))
    nodes = {n.name: n for n in gm.graph.nodes}
    for (name, source, dim, groups), positions in removed.items():
        end, src = nodes[name], nodes[source]
        index = kept_order(int(src.meta["val"].shape[dim]), groups, positions)
        attr = f"_deadweight_shuffle_{name}"
        gm.register_buffer(attr, index.to(_device(gm)))
        with gm.graph.inserting_before(end):
            table = gm.graph.get_attr(attr)
            gathered = gm.graph.call_function(aten.index_select.default, (src, dim, table))
        end.replace_all_uses_with(gathered)
        _erase_chain(gm, end, src)


def kept_order(size: int, groups: int, gone: set[int]) -> torch.Tensor:
    """Positions of the kept input, in shuffled order, numbered among the kept."""
    per = size // groups
    rank = {i: r for r, i in enumerate(i for i in range(size) if i not in gone)}
    order = ((j % groups) * per + j // groups for j in range(size))
    return torch.tensor([rank[i] for i in order if i in rank], dtype=torch.long)


def _erase_chain(gm: fx.GraphModule, end: fx.Node, src: fx.Node) -> None:
    """Remove the shuffle's ops, from its end back to its input (each used only by the
    next, as the analysis checked)."""
    node = end
    while node is not src and not node.users:
        data = node.args[0]  # views, the swap, copies and `channel_shuffle` alike
        gm.graph.erase_node(node)
        assert isinstance(data, fx.Node)
        node = data


def _device(gm: fx.GraphModule) -> torch.device:
    for t in (*gm.parameters(), *gm.buffers()):
        return t.device
    return torch.device("cpu")
