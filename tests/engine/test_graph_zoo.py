"""The groups each zoo model must find: prunable where a cut is sound, frozen (with a
reason) where it is not, in equal parts where a grouped convolution reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.zoo import ZOO
from tests.zoo.programs import load

# Groups each model must find prunable: the engine must not freeze what it can cut.
EXPECTED_PRUNABLE = {
    "vgg": {"features.0.0", "features.2.0", "features.4.0", "classifier.1"},
    "resnet": {"stem.0", "layer1.conv1.0", "layer2.conv1.0"},
    "bottleneck": {"reduce.0", "conv.0", "expand.0"},
    "densenet": {"stem.0", "l1.0", "l2.0", "transition.0"},
    "mobilenet": {"stem.0", "expand.0", "se.reduce"},
    "conv1d": {"c1", "c2"},
    "transformer_mlp": {"fc1"},
    "convnext": {"stem", "pwconv1"},
    "vit": {"patch", "fc1"},
    "shufflenet": {"after.0"},
    "inception": {"squeeze.0", "b1.0", "b3.0", "pool_proj.0", "left.0", "right.0", "c1.0", "c2.0"},
    "resnext": {"stem.0", "reduce.0", "grouped.0", "se.reduce", "head"},
}
# Groups that a grouped convolution splits into runs of equal kept counts.
EXPECTED_PARTS = {"resnext": {"reduce.0": 4, "grouped.0": 4, "stem.0": 2, "head": 2}}
# Groups the engine must freeze, and why (a wrong cut would be worse than none).
EXPECTED_FROZEN = {
    "vit": {"qkv": "splits these channels across dimensions"},
    "shufflenet": {
        "stem.0": "splits a layer's channels between its parts",
        "branch.0": "splits these channels across dimensions",
    },
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_groups_found(tmp_path: Path, name: str) -> None:
    _, _, analysis, _ = load(tmp_path, name)
    prunable = {g.name for g in analysis.prunable}
    assert EXPECTED_PRUNABLE[name] <= prunable, [g.describe() for g in analysis.groups]
    assert all(g.frozen_reason for g in analysis.frozen)
    for group, reason in EXPECTED_FROZEN.get(name, {}).items():
        assert reason in (analysis.group(group).frozen_reason or ""), analysis.group(group)
    for group, parts in EXPECTED_PARTS.get(name, {}).items():
        assert analysis.group(group).parts == parts
