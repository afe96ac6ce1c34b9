"""Tiny modules analysed as the engine analyses an upload: exported, read back through the
safe reader, walked by `analyse`. For the tests of one op family at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from pruning.graph import ChannelGroup, GraphAnalysis, analyse
from pruning.reader import read_program
from tests.tiny_models import export_to


def analysed(tmp_path: Path, model: nn.Module, d_in: int | tuple[int, ...]) -> GraphAnalysis:
    """The analysis of `model` exported with a dynamic batch and per-sample shape `d_in`."""
    path = export_to(model, tmp_path / "model.pt2", d_in=d_in)
    return analyse(read_program(path).module())


def readers(group: ChannelGroup) -> list[str]:
    """The weights that read the group, in graph order (one entry per consumer)."""
    return [c.weight.path for c in group.consumers]


def sliced(group: ChannelGroup) -> list[str]:
    """The per-channel tensors sliced with the group (norms, depthwise filters, embeddings)."""
    return [p.path for p in group.channel_params]


class Zeroing(fx.Interpreter):
    """Runs a module with channel positions zeroed where each consumer reads its tap (the
    tapped argument, which for `addmm(bias, x, W.T)` is not the first)."""

    def __init__(self, gm: fx.GraphModule, masks: dict[str, list[tuple[str, int, list[int]]]]):
        super().__init__(gm)
        self.masks = masks
        self._node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self._node = n
        return super().run_node(n)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        node = self._node
        assert node is not None
        args = list(args)
        for tap, dim, positions in self.masks.get(node.name, []):
            i = next(i for i, a in enumerate(node.args) if isinstance(a, fx.Node) and a.name == tap)
            x = args[i].clone()
            x.index_fill_(dim, torch.tensor(positions, dtype=torch.long), 0.0)
            args[i] = x
        return super().call_function(target, tuple(args), kwargs)


def consumer_masks(
    analysis: GraphAnalysis, plan: dict[str, list[int]]
) -> dict[str, list[tuple[str, int, list[int]]]]:
    """For `Zeroing`: per consumer, (tapped node, dim, positions) of the removed channels."""
    masks: dict[str, list[tuple[str, int, list[int]]]] = {}
    for name, kept in plan.items():
        group = analysis.group(name)
        gone = [c for c in range(group.width) if c not in set(kept)]
        for c in group.consumers:
            entry = (c.tap.node, c.tap.span.dim, c.tap.span.positions(gone))
            masks.setdefault(c.node, []).append(entry)
    return masks
