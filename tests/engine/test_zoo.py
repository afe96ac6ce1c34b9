"""The channel-group engine on a zoo of architectures: every cut is a real, correct cut.

For each model: keep-all reproduces the outputs; random keep-sets give a smaller program
whose outputs equal the original's with those channels zeroed where each consumer reads
them; artifacts save and read back through the safe reader. The groups each model must
find are checked in test_graph_zoo.py, compensation on the zoo in test_zoo_compensation.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pruning.criteria import equal_parts
from pruning.errors import UnsupportedModel
from pruning.surgery import apply_plan
from tests.engine.graph_helpers import Zeroing, consumer_masks
from tests.zoo import RENORMALISED, ZOO
from tests.zoo.programs import load, roundtrip


@pytest.mark.parametrize("name", sorted(ZOO))
def test_keep_all_reproduces_outputs(tmp_path: Path, name: str) -> None:
    model, gm, analysis, feeder = load(tmp_path, name)
    plan = {g.name: list(range(g.width)) for g in analysis.prunable}
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(5, *model.input_shape)  # type: ignore[arg-type]
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_cuts_equal_zeroed_channels(tmp_path: Path, name: str, seed: int) -> None:
    model, gm, analysis, feeder = load(tmp_path, name)
    rng = np.random.default_rng(seed)
    plan = {
        # Random keep-sets, evened out over the runs of grouped convolutions.
        g.name: equal_parts(
            sorted(rng.choice(g.width, size=int(rng.integers(1, g.width)), replace=False).tolist()),
            torch.from_numpy(rng.random(g.width)),
            g.parts,
        )
        for g in analysis.prunable
        if g.width > 1 and g.name not in RENORMALISED.get(name, set())
    }
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(7, *model.input_shape)  # type: ignore[arg-type]
    with torch.no_grad():
        expected = Zeroing(gm, consumer_masks(analysis, plan)).run(x)
        expected = expected[0] if isinstance(expected, (tuple, list)) else expected
        torch.testing.assert_close(pruned(x), expected, rtol=1e-4, atol=1e-5)
    before = sum(p.numel() for p in gm.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    assert after < before


def test_grouped_convolutions_are_cut_per_group(tmp_path: Path) -> None:
    """Weights of a grouped conv lose rows and, per conv group, their own local columns."""
    _, gm, analysis, feeder = load(tmp_path, "resnext")
    plan = {"reduce.0": [0, 2, 4, 5, 7, 8, 9, 10], "grouped.0": [0, 1, 5, 6, 8, 9, 14, 15]}
    plan = {k: sorted(v) for k, v in plan.items()}  # 2 of 3 per run; 2 of 4 per run
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    weight = pruned.get_parameter("grouped.0.weight")
    assert weight.shape == (8, 2, 3, 3)  # 4 groups x 2 rows, 2 of 3 input channels each
    original = gm.get_parameter("grouped.0.weight")
    # Conv group 1 keeps output rows 5, 6 and input channels 4, 5 (local 1, 2).
    torch.testing.assert_close(weight[2:4], original[[5, 6]][:, [1, 2]])
    with pytest.raises(UnsupportedModel, match="as many channels in each of its 4 conv groups"):
        apply_plan(gm, analysis, {"reduce.0": [0, 1, 2, 3, 4, 5, 6, 7]})
