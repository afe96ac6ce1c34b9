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
    "vit": {"patch", "fc1", "qkv"},
    # Each split divides the groups the shuffle before it interleaved (`divide`).
    "shufflenet": {"left.0[0:1]", "left.0[2:4]", "right.0[1:2]", "branch1.0[0:2]", "after.0"},
    "inception": {"squeeze.0", "b1.0", "b3.0", "pool_proj.0", "left.0", "right.0", "c1.0", "c2.0"},
    "resnext": {"stem.0", "reduce.0", "grouped.0", "se.reduce", "head"},
    "gpt": {"c_attn", "fc"},
    "gpt2": {"c_attn", "fc"},
    "llama": {"q_proj", "gate_proj"},
    "mha": {"attn.in_proj_weight"},
    "swin": {"qkv"},
}
# Attention heads: group -> (heads cut as units, query heads, head_dim).
EXPECTED_HEADS = {
    "vit": {"qkv": (3, 3, 4)},
    "gpt": {"c_attn": (4, 4, 4)},
    "gpt2": {"c_attn": (4, 4, 4)},
    "llama": {"q_proj": (2, 8, 4)},  # 2 key/value heads, each with its 4 query heads
    "mha": {"attn.in_proj_weight": (3, 3, 4)},
    "swin": {"qkv": (2, 2, 4)},
}
# Groups that a grouped convolution splits into runs of equal kept counts.
EXPECTED_PARTS = {"resnext": {"reduce.0": 4, "grouped.0": 4, "stem.0": 2, "head": 2}}
# Groups the engine must freeze, and why (a wrong cut would be worse than none).
EXPECTED_FROZEN: dict[str, dict[str, str]] = {}


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
    for group, (units, heads, head_dim) in EXPECTED_HEADS.get(name, {}).items():
        described = analysis.group(group).describe()
        assert described["kind"] == "head" and described["heads"] == units, described
        assert described.get("query_heads", units) == heads and described["head_dim"] == head_dim
