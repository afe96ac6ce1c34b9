"""The channel-group engine on a zoo of architectures: every cut is a real, correct cut.

For each model: keep-all reproduces the outputs; random keep-sets give a smaller program
whose outputs equal the original's with those channels zeroed where each consumer reads
them; artifacts save and read back through the safe reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import fx, nn

from pruning.config import Compensation
from pruning.criteria import equal_parts
from pruning.data import Feeder
from pruning.errors import UnsupportedModel
from pruning.graph.groups import GraphAnalysis
from pruning.graph.walk import analyse
from pruning.reader.archive import read_program
from pruning.surgery import apply_plan, export
from tests.tiny_models import export_to
from tests.zoo import ZOO, build

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
# Groups whose channels pass a LayerNorm: cutting them renormalises the others, so the
# zeroing equivalence does not hold for them (they stay prunable; outputs change).
RENORMALISED: dict[str, set[str]] = {"convnext": {"stem"}, "vit": {"patch"}}


def _export(model: nn.Module, path: Path) -> Path:
    return export_to(model, path, d_in=model.input_shape)  # type: ignore[arg-type]


_EXPORTED: dict[str, bytes] = {}  # name -> .pt2 bytes: each zoo model is exported once


def _load(tmp_path: Path, name: str) -> tuple[nn.Module, fx.GraphModule, GraphAnalysis, Feeder]:
    model = build(name)  # seeded: the same weights every time
    path = tmp_path / f"{name}.pt2"
    if name not in _EXPORTED:
        _EXPORTED[name] = _export(model, path).read_bytes()
    path.write_bytes(_EXPORTED[name])
    gm = read_program(path).module()
    analysis = analyse(gm)
    return model, gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16)


def _roundtrip(tmp_path: Path, gm: fx.GraphModule, feeder: Feeder) -> fx.GraphModule:
    path = tmp_path / "pruned.pt2"
    torch.export.save(export(gm, feeder), path)
    return read_program(path).module()


class Zeroing(fx.Interpreter):
    """Runs the original module with given channel positions zeroed at consumers' inputs."""

    def __init__(self, gm: fx.GraphModule, masks: dict[str, list[tuple[int, list[int]]]]):
        super().__init__(gm)
        self.masks = masks

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        name = self._current
        if name in self.masks:
            x = args[0].clone()
            for dim, positions in self.masks[name]:
                index = torch.tensor(positions, dtype=torch.long)
                x.index_fill_(dim, index, 0.0)
            args = (x, *args[1:])
        return super().call_function(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        self._current = n.name
        return super().run_node(n)


def _masks(
    analysis: GraphAnalysis, plan: dict[str, list[int]]
) -> dict[str, list[tuple[int, list[int]]]]:
    masks: dict[str, list[tuple[int, list[int]]]] = {}
    for name, kept in plan.items():
        group = analysis.group(name)
        gone = [c for c in range(group.width) if c not in set(kept)]
        for c in group.consumers:
            masks.setdefault(c.node, []).append((c.tap.span.dim, c.tap.span.positions(gone)))
    return masks


@pytest.mark.parametrize("name", sorted(ZOO))
def test_groups_found(tmp_path: Path, name: str) -> None:
    _, _, analysis, _ = _load(tmp_path, name)
    prunable = {g.name for g in analysis.prunable}
    assert EXPECTED_PRUNABLE[name] <= prunable, [g.describe() for g in analysis.groups]
    assert all(g.frozen_reason for g in analysis.frozen)
    for group, reason in EXPECTED_FROZEN.get(name, {}).items():
        assert reason in (analysis.group(group).frozen_reason or ""), analysis.group(group)
    for group, parts in EXPECTED_PARTS.get(name, {}).items():
        assert analysis.group(group).parts == parts


@pytest.mark.parametrize("name", sorted(ZOO))
def test_keep_all_reproduces_outputs(tmp_path: Path, name: str) -> None:
    model, gm, analysis, feeder = _load(tmp_path, name)
    plan = {g.name: list(range(g.width)) for g in analysis.prunable}
    pruned = _roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(5, *model.input_shape)  # type: ignore[arg-type]
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_cuts_equal_zeroed_channels(tmp_path: Path, name: str, seed: int) -> None:
    model, gm, analysis, feeder = _load(tmp_path, name)
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
    pruned = _roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(7, *model.input_shape)  # type: ignore[arg-type]
    with torch.no_grad():
        expected = Zeroing(gm, _masks(analysis, plan)).run(x)
        expected = expected[0] if isinstance(expected, (tuple, list)) else expected
        torch.testing.assert_close(pruned(x), expected, rtol=1e-4, atol=1e-5)
    before = sum(p.numel() for p in gm.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    assert after < before


def test_constant_conv_channels_removed_with_compensation_into_a_linear(tmp_path: Path) -> None:
    """Conv -> BN -> ReLU -> flatten -> Linear: dead channels folded into the Linear's bias."""
    from pruning.data import ArrayData
    from pruning.stats import collect

    model = build("vgg")
    dead = [1, 6, 8]
    with torch.no_grad():
        model.features[4][0].weight[dead] = 0.0  # their conv output is 0, BN makes it a constant
        model.features[4][1].bias[dead] = torch.tensor([0.7, 0.2, 1.5])
    gm = read_program(_export(model, tmp_path / "vgg.pt2")).module()
    analysis = analyse(gm)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 16)
    x = np.random.default_rng(0).normal(size=(40, 3, 16, 16)).astype(np.float32)
    group = analysis.group("features.4.0")
    stats = collect(
        gm, {t: g.width for g in analysis.prunable for t in g.taps}, feeder(ArrayData(x))
    )
    tap = group.taps[0]
    assert tap.span.block == 16  # each channel is a 4x4 block of the Linear's inputs
    assert torch.all(stats[tap].std[dead] == 0)
    keep = [c for c in range(10) if c not in dead]
    pruned = _roundtrip(
        tmp_path,
        apply_plan(gm, analysis, {group.name: keep}, moments=stats, compensate=Compensation.MEAN),
        feeder,
    )
    xt = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(pruned(xt), model(xt), rtol=1e-5, atol=1e-5)
    assert pruned.get_parameter("classifier.1.weight").shape == (24, 7 * 16)


def test_conv_statistics_run_over_batch_and_positions(tmp_path: Path) -> None:
    from pruning.data import ArrayData
    from pruning.stats import collect

    model = build("conv1d")
    gm = read_program(_export(model, tmp_path / "c.pt2")).module()
    analysis = analyse(gm)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 7)
    x = np.random.default_rng(0).normal(size=(30, 4, 32)).astype(np.float32)
    group = analysis.group("c1")
    stats = collect(gm, {t: group.width for t in group.taps}, feeder(ArrayData(x)))
    with torch.no_grad():
        seen = nn.functional.max_pool1d(torch.relu(model.bn(model.c1(torch.from_numpy(x)))), 2)
    flat = seen.transpose(1, 2).reshape(-1, 10).double()  # (N * L, C)
    s = stats[group.taps[0]]
    torch.testing.assert_close(s.mean, flat.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.std, flat.std(0), rtol=1e-5, atol=1e-6)


def test_grouped_convolutions_are_cut_per_group(tmp_path: Path) -> None:
    """Weights of a grouped conv lose rows and, per conv group, their own local columns."""
    _, gm, analysis, feeder = _load(tmp_path, "resnext")
    plan = {"reduce.0": [0, 2, 4, 5, 7, 8, 9, 10], "grouped.0": [0, 1, 5, 6, 8, 9, 14, 15]}
    plan = {k: sorted(v) for k, v in plan.items()}  # 2 of 3 per run; 2 of 4 per run
    pruned = _roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    weight = pruned.get_parameter("grouped.0.weight")
    assert weight.shape == (8, 2, 3, 3)  # 4 groups x 2 rows, 2 of 3 input channels each
    original = gm.get_parameter("grouped.0.weight")
    # Conv group 1 keeps output rows 5, 6 and input channels 4, 5 (local 1, 2).
    torch.testing.assert_close(weight[2:4], original[[5, 6]][:, [1, 2]])
    with pytest.raises(UnsupportedModel, match="as many channels in each of its 4 conv groups"):
        apply_plan(gm, analysis, {"reduce.0": [0, 1, 2, 3, 4, 5, 6, 7]})


def test_constant_channels_into_a_grouped_conv_removed_with_compensation(tmp_path: Path) -> None:
    """A 1x1 grouped conv has no padded border: compensation is exact there too."""
    from pruning.data import ArrayData
    from pruning.stats import collect

    model = build("resnext")
    dead = [1, 9]  # one in each of head's 2 input groups: an even cut
    with torch.no_grad():
        model.expand[0].weight[dead] = 0.0
        model.expand[1].bias[dead] = torch.tensor([0.4, 0.9])
        model.stem[0].weight[dead] = 0.0  # the residual sum stays constant on those channels
        model.stem[1].bias[dead] = torch.tensor([0.3, 0.2])
    gm = read_program(_export(model, tmp_path / "x.pt2")).module()
    analysis = analyse(gm)
    group = analysis.group("stem.0")
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 16)
    x = np.random.default_rng(0).normal(size=(20, 8, 8, 8)).astype(np.float32)
    stats = collect(gm, {t: group.width for t in group.taps}, feeder(ArrayData(x)))
    # Both readers of the residual stream, reduce and the grouped head, are 1x1 convs.
    keep = [c for c in range(16) if c not in dead]
    pruned = _roundtrip(
        tmp_path,
        apply_plan(gm, analysis, {group.name: keep}, moments=stats, compensate=Compensation.MEAN),
        feeder,
    )
    xt = torch.randn(4, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pruned(xt), model(xt), rtol=1e-5, atol=1e-5)
    assert pruned.get_parameter("head.weight").shape == (6, 7, 1, 1)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_constant_channels_read_by_linear_layers_compensate_exactly(
    tmp_path: Path, name: str
) -> None:
    """Every group read only by Linear layers: make some channels constant on purpose (their
    producers' weight rows zeroed), cut them with compensation, and nothing changes."""
    from pruning.data import ArrayData
    from pruning.stats import collect

    model, gm, analysis, feeder = _load(tmp_path, name)
    candidates = [
        g
        for g in analysis.prunable
        if g.width > 2
        and g.consumers
        and all(c.kind == "linear" for c in g.consumers)
        and g.name not in RENORMALISED.get(name, set())
    ]
    if not candidates:
        pytest.skip(f"no group of {name} is read by Linear layers only")
    for group in candidates:  # zero the rows of channels 0 and width-1 in every producer
        dead = [0, group.width - 1]
        for ps in group.producers:
            if ps.path.endswith(".weight"):
                w = gm.get_parameter(ps.path)
                with torch.no_grad():
                    w.index_fill_(0, torch.tensor(ps.span.positions(dead)), 0.0)
    shape = model.input_shape  # type: ignore[attr-defined]
    x = np.random.default_rng(0).normal(size=(24, *shape)).astype(np.float32)
    taps = {t: g.width for g in candidates for t in g.taps}
    stats = collect(gm, taps, feeder(ArrayData(x)))
    plan = {}
    for group in candidates:
        dead = [0, group.width - 1]
        assert all(float(stats[t].std[dead].max()) < 1e-6 for t in group.taps), group.name
        plan[group.name] = list(range(1, group.width - 1))
    pruned = _roundtrip(
        tmp_path,
        apply_plan(gm, analysis, plan, moments=stats, compensate=Compensation.MEAN),
        feeder,
    )
    xt = torch.from_numpy(x[:6])
    with torch.no_grad():
        torch.testing.assert_close(pruned(xt), gm(xt), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in gm.parameters())
