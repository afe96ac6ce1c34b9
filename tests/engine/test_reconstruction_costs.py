"""The reconstruction criterion's costs on a whole model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pruning.data import ArrayData, Feeder
from pruning.graph import analyse
from pruning.reader import read_program
from tests.engine.blob_classifier import Wide
from tests.tiny_models import export_to


def test_a_group_that_is_constant_where_it_is_read_costs_nothing(tmp_path: Path) -> None:
    from pruning.ranking import reconstruction_rankings
    from pruning.stats import collect

    torch.manual_seed(0)
    model = Wide()
    with torch.no_grad():
        model.fc1.weight.zero_()  # fc1's outputs are constants: mean folding is exact
    gm = read_program(export_to(model.eval(), tmp_path / "c.pt2", d_in=8)).module()
    analysis = analyse(gm)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 64)
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    taps = {t: g.width for g in analysis.prunable for t in g.taps}
    stats = collect(gm, taps, feeder(ArrayData(x)), gram=set(taps))
    rankings = reconstruction_rankings(gm, analysis, stats)
    assert max(rankings["fc1"].cost) == 0.0
    assert min(rankings["fc2"].cost) >= 0.0
