"""Zoo models as the engine sees them: exported, read back through the safe reader and
analysed; pruned modules exported, saved and read back the same way."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import fx, nn

from pruning.data import Feeder
from pruning.graph import GraphAnalysis, analyse
from pruning.reader import read_program
from pruning.surgery import export
from tests.tiny_models import export_to
from tests.zoo import build

_EXPORTED: dict[str, bytes] = {}  # name -> .pt2 bytes: each zoo model is exported once


def export_model(model: nn.Module, path: Path) -> Path:
    """Export a zoo model (dynamic batch, its own input shape) to `path`."""
    return export_to(model, path, d_in=model.input_shape)  # type: ignore[arg-type]


def load(tmp_path: Path, name: str) -> tuple[nn.Module, fx.GraphModule, GraphAnalysis, Feeder]:
    """The seeded model, its program's module as read back, its analysis and a feeder."""
    model = build(name)  # seeded: the same weights every time
    path = tmp_path / f"{name}.pt2"
    if name not in _EXPORTED:
        _EXPORTED[name] = export_model(model, path).read_bytes()
    path.write_bytes(_EXPORTED[name])
    gm = read_program(path).module()
    analysis = analyse(gm)
    return model, gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16)


def roundtrip(tmp_path: Path, gm: fx.GraphModule, feeder: Feeder) -> fx.GraphModule:
    """Export a pruned module, save it and read it back: what a user downloads."""
    path = tmp_path / "pruned.pt2"
    torch.export.save(export(gm, feeder), path)
    return read_program(path).module()
