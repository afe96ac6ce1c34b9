"""Statistics and compensation on the zoo: constant channels cut with compensation leave
the outputs as they were, wherever their readers are (Linear, conv, grouped conv), and so do
attention heads whose features are constants of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation
from pruning.data import ArrayData, Feeder
from pruning.graph import analyse
from pruning.ranking import reconstruction_rankings
from pruning.reader import read_program
from pruning.stats import collect
from pruning.surgery import apply_plan
from tests.zoo import RENORMALISED, ZOO, build
from tests.zoo.programs import export_model, load, roundtrip


def test_constant_conv_channels_removed_with_compensation_into_a_linear(tmp_path: Path) -> None:
    """Conv -> BN -> ReLU -> flatten -> Linear: dead channels folded into the Linear's bias."""
    model = build("vgg")
    dead = [1, 6, 8]
    with torch.no_grad():
        model.features[4][0].weight[dead] = 0.0  # their conv output is 0, BN makes it a constant
        model.features[4][1].bias[dead] = torch.tensor([0.7, 0.2, 1.5])
    gm = read_program(export_model(model, tmp_path / "vgg.pt2")).module()
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
    pruned = roundtrip(
        tmp_path,
        apply_plan(gm, analysis, {group.name: keep}, moments=stats, compensate=Compensation.MEAN),
        feeder,
    )
    xt = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(pruned(xt), model(xt), rtol=1e-5, atol=1e-5)
    assert pruned.get_parameter("classifier.1.weight").shape == (24, 7 * 16)


def test_conv_statistics_run_over_batch_and_positions(tmp_path: Path) -> None:
    model = build("conv1d")
    gm = read_program(export_model(model, tmp_path / "c.pt2")).module()
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


def test_constant_channels_into_a_grouped_conv_removed_with_compensation(tmp_path: Path) -> None:
    """A 1x1 grouped conv has no padded border: compensation is exact there too."""
    model = build("resnext")
    dead = [1, 9]  # one in each of head's 2 input groups: an even cut
    with torch.no_grad():
        model.expand[0].weight[dead] = 0.0
        model.expand[1].bias[dead] = torch.tensor([0.4, 0.9])
        model.stem[0].weight[dead] = 0.0  # the residual sum stays constant on those channels
        model.stem[1].bias[dead] = torch.tensor([0.3, 0.2])
    gm = read_program(export_model(model, tmp_path / "x.pt2")).module()
    analysis = analyse(gm)
    group = analysis.group("stem.0")
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 16)
    x = np.random.default_rng(0).normal(size=(20, 8, 8, 8)).astype(np.float32)
    stats = collect(gm, {t: group.width for t in group.taps}, feeder(ArrayData(x)))
    # Both readers of the residual stream, reduce and the grouped head, are 1x1 convs.
    keep = [c for c in range(16) if c not in dead]
    pruned = roundtrip(
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
    model, gm, analysis, feeder = load(tmp_path, name)
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
            if ps.path.endswith("weight"):  # also `in_proj_weight` (nn.MultiheadAttention)
                w = gm.get_parameter(ps.path)
                with torch.no_grad():
                    w.index_fill_(ps.span.dim, torch.tensor(ps.span.positions(dead)), 0.0)
    shape = model.input_shape  # type: ignore[attr-defined]
    x = np.random.default_rng(0).normal(size=(24, *shape)).astype(np.float32)
    taps = {t: g.width for g in candidates for t in g.taps}
    stats = collect(gm, taps, feeder(ArrayData(x)))
    plan = {}
    for group in candidates:
        dead = [0, group.width - 1]
        assert all(float(stats[t].std[dead].max()) < 1e-6 for t in group.taps), group.name
        plan[group.name] = list(range(1, group.width - 1))
    pruned = roundtrip(
        tmp_path,
        apply_plan(gm, analysis, plan, moments=stats, compensate=Compensation.MEAN),
        feeder,
    )
    xt = torch.from_numpy(x[:6])
    with torch.no_grad():
        torch.testing.assert_close(pruned(xt), gm(xt), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in gm.parameters())


@pytest.mark.parametrize("name", ["vit", "mha", "gpt2"])  # gpt2: its c_proj is stored (in, out)
def test_heads_with_constant_features_cost_nothing_and_cut_exactly_with_linear_compensation(
    tmp_path: Path, name: str
) -> None:
    """Heads whose q, k, v rows are zero output v's bias: a constant per feature, different
    across the head's features. The reconstruction criterion ranks them first at no cost,
    and linear compensation (fitted about each feature's mean) cuts them exactly."""
    _, gm, analysis, feeder = load(tmp_path, name)
    (group,) = [g for g in analysis.prunable if g.kind == "head"]
    assert all(t.span.block == 4 for t in group.taps)
    dead = [0, group.width - 1]
    for ps in group.producers:  # rows of q, k and v: zero weights, distinct biases
        rows = torch.tensor(ps.span.positions(dead))
        t = gm.get_parameter(ps.path)
        with torch.no_grad():
            if ps.path.endswith("weight"):  # dim 1 of a weight stored (in, out)
                t.index_fill_(ps.span.dim, rows, 0.0)
            else:  # nn.MultiheadAttention's are zeros: the features would all be 0
                t[rows] = torch.linspace(-1.0, 1.0, len(rows))
    x = np.random.default_rng(0).normal(size=(24, *build(name).input_shape)).astype(np.float32)
    taps = {t: g.width for g in analysis.prunable for t in g.taps}  # the criterion reads all
    stats = collect(gm, taps, feeder(ArrayData(x)), gram=set(taps))
    ranking = reconstruction_rankings(gm, analysis, stats)[group.name]
    assert sorted(ranking.order[: len(dead)]) == dead and max(ranking.cost[: len(dead)]) < 1e-9
    plan = {group.name: list(range(1, group.width - 1))}
    pruned = roundtrip(
        tmp_path,
        apply_plan(gm, analysis, plan, moments=stats, compensate=Compensation.LINEAR),
        feeder,
    )
    xt = torch.from_numpy(x[:6])
    with torch.no_grad():
        torch.testing.assert_close(pruned(xt), gm(xt), rtol=1e-4, atol=1e-5)
