"""Programs after `run_decompositions()`: Linear layers as `addmm`/`mm`/`bmm` over `W.T`, with
`expand`, `clone` and views around them, are cut like the un-decomposed program, not frozen.

For each model: the decomposed program has the groups of the plain export (names, widths,
what is frozen); keep-all reproduces the outputs; random keep-sets give a smaller program
equal to the decomposed original with those channels zeroed where each consumer reads them;
compensation reaches a bias-less `mm`/`bmm`; every artifact reads back through the safe
reader. A product of two activations (attention) passes channels or freezes them, with a
reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation
from pruning.data import ArrayData
from pruning.evaluate import count_macs
from pruning.stats import collect
from pruning.surgery import apply_plan
from tests.engine import decomposed_models as dm
from tests.zoo import RENORMALISED, build
from tests.zoo.programs import roundtrip

aten = torch.ops.aten


@pytest.mark.parametrize("table", ["core", "default"])
@pytest.mark.parametrize("name", ["mlp", "tokens", "conv_head", "channels_last", "root_weight"])
def test_decomposed_program_has_the_groups_of_the_plain_export(
    tmp_path: Path, name: str, table: str
) -> None:
    model = dm.model(name)
    _, plain, _ = dm.read(tmp_path, dm.export_program(model, dm.shape(name, model)), "plain.pt2")
    _, decomposed, _ = dm.decomposed(tmp_path, model, dm.shape(name, model), table)
    assert dm.groups(decomposed) == dm.groups(plain), [g.describe() for g in decomposed.groups]
    assert len(decomposed.prunable) >= 2


@pytest.mark.parametrize("name", dm.ZOO_DECOMPOSED)
def test_decomposed_zoo_models_have_the_groups_of_the_plain_export(
    tmp_path: Path, name: str
) -> None:
    model = build(name)
    shape = tuple(model.input_shape)  # type: ignore[arg-type]
    _, plain, _ = dm.read(tmp_path, dm.export_program(model, shape), "plain.pt2")
    _, decomposed, _ = dm.decomposed(tmp_path, model, shape)
    assert dm.groups(decomposed) == dm.groups(plain), [g.describe() for g in decomposed.groups]


@pytest.mark.parametrize("name", sorted(dm.MODELS))
def test_keep_all_reproduces_outputs(tmp_path: Path, name: str) -> None:
    model = dm.model(name)
    gm, analysis, feeder = dm.decomposed(tmp_path, model, dm.shape(name, model))
    plan = {g.name: list(range(g.width)) for g in analysis.prunable}
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    x = torch.randn(9, *dm.shape(name, model))
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), gm(x), rtol=0, atol=0)
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-6, atol=1e-6)


# Each model once, the seeds (weights and keep-set) alternating between models.
@pytest.mark.parametrize(("name", "seed"), [(n, i % 2) for i, n in enumerate(sorted(dm.MODELS))])
def test_random_cuts_equal_zeroed_channels(tmp_path: Path, name: str, seed: int) -> None:
    model = dm.model(name, seed)
    gm, analysis, feeder = dm.decomposed(tmp_path, model, dm.shape(name, model))
    plan = dm.random_plan(analysis, seed)
    assert plan
    dm.check_cut_equals_zeroed(tmp_path, gm, analysis, feeder, plan)


# Attention: heads merged with the batch around `bmm`, the softmax written out, GQA, the
# fused (3, heads, head_dim) projections, Swin's gathered bias per head.
@pytest.mark.parametrize(
    "name", ["convnext", "conv1d", "gpt", "gpt2", "llama", "mha", "swin", "vit"]
)
def test_random_cuts_of_decomposed_zoo_models_equal_zeroed_channels(
    tmp_path: Path, name: str
) -> None:
    model = build(name)
    shape = tuple(model.input_shape)  # type: ignore[arg-type]
    gm, analysis, feeder = dm.decomposed(tmp_path, model, shape)
    plan = dm.random_plan(analysis, 0, RENORMALISED.get(name, set()))
    assert plan
    dm.check_cut_equals_zeroed(tmp_path, gm, analysis, feeder, plan)


def test_weights_bias_and_sizes_shrink(tmp_path: Path) -> None:
    """W loses rows and columns through the transpose; the sizes in expand and view follow."""
    model = dm.model("channels_last")
    gm, analysis, feeder = dm.decomposed(tmp_path, model, model.input_shape)  # type: ignore[arg-type]
    plan = {"conv": [0, 2, 5], "fc1": [1, 4, 7, 8, 11], "fc2": [0, 3], "mix": [0, 1, 6]}
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    assert pruned.get_parameter("fc1.weight").shape == (5, 3)
    assert pruned.get_parameter("fc2.weight").shape == (2, 5)
    assert pruned.get_parameter("fc2.bias").shape == (2,)
    assert pruned.get_parameter("mix.weight").shape == (3, 2)
    assert pruned.get_parameter("head.weight").shape == (4, 3)
    assert pruned(torch.randn(3, 3, 6, 6)).shape == (3, 4)


@pytest.mark.parametrize(
    ("name", "layer", "consumer"),
    [
        ("tokens", "fc1", aten.mm),
        ("channels_last", "conv", aten.bmm),
        ("root_weight", "fc", aten.mm),  # the weight is the model's own: a bias beside it
    ],
)
def test_compensation_reaches_a_product_without_bias(
    tmp_path: Path, name: str, layer: str, consumer: Any
) -> None:
    """Constant channels read by a bias-less `mm`/`bmm`, removed with compensation, leave
    the outputs as they were: the product gets a bias (an `add` after it)."""
    model = dm.model(name)
    dead = [1, 4, 7]
    with torch.no_grad():
        getattr(model, layer).weight[dead] = 0.0
        getattr(model, layer).bias[dead] = torch.tensor([0.5, -1.0, 2.0])
    gm, analysis, feeder = dm.decomposed(tmp_path, model, dm.shape(name, model))
    group = analysis.group(layer)
    products = {n.name for n in gm.graph.find_nodes(op="call_function", target=consumer.default)}
    assert {c.node for c in group.consumers} <= products
    assert {c.bias for c in group.consumers} == {None}
    x = np.random.default_rng(0).normal(size=(64, *dm.shape(name, model))).astype(np.float32)
    taps = {t: g.width for g in analysis.prunable for t in g.taps}
    stats = collect(gm, taps, feeder(ArrayData(x)))
    keep = [j for j in range(group.width) if j not in dead]
    cut = apply_plan(gm, analysis, {layer: keep}, moments=stats, compensate=Compensation.MEAN)
    added = [n for n in cut.graph.nodes if n.meta.get("compensation_bias")]
    assert len(added) == len(group.consumers)  # one bias per product, after it
    compensated = roundtrip(tmp_path, cut, feeder)
    plain = roundtrip(tmp_path, apply_plan(gm, analysis, {layer: keep}), feeder)
    xt = torch.randn(20, *dm.shape(name, model))
    with torch.no_grad():
        torch.testing.assert_close(compensated(xt), model(xt), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(plain(xt), model(xt), atol=1e-3)


def test_attention_scores_freeze_with_a_reason_and_values_are_cut(tmp_path: Path) -> None:
    model = dm.model("attention")
    _, analysis, _ = dm.decomposed(tmp_path, model, model.input_shape)  # type: ignore[arg-type]
    assert [n for n in analysis.groups if n.name == "q"]
    for name in ("q", "k"):
        reason = analysis.group(name).frozen_reason or ""
        assert "a product of two activations sums over these channels" in reason
    assert {"v", "o", "fc"} <= {g.name for g in analysis.prunable}
    assert [c.weight.path for c in analysis.group("v").consumers] == ["o.weight"]


def test_a_stored_matrix_used_as_it_is_is_a_linear_layer(tmp_path: Path) -> None:
    """`x @ W` with W stored (in, out) (HF's `Conv1D`): its columns are the channels."""

    class Projection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 8)
            self.proj = nn.Parameter(torch.randn(8, 5))  # (in, out)
            self.head = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(torch.relu(self.fc(x)) @ self.proj))

    gm, analysis, feeder = dm.decomposed(tmp_path, Projection(), (6,))
    assert {"fc", "proj"} <= {g.name for g in analysis.prunable}
    plan = {"fc": [0, 3, 4, 7], "proj": [1, 2, 4]}
    dm.check_cut_equals_zeroed(tmp_path, gm, analysis, feeder, plan)
    pruned = apply_plan(gm, analysis, plan)
    assert pruned.get_parameter("proj").shape == (4, 3)


def test_a_stored_matrix_on_the_left_freezes(tmp_path: Path) -> None:
    class LeftProduct(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 8)
            self.mix = nn.Parameter(torch.randn(4, 8))
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head((self.mix @ torch.relu(self.fc(x)).T).T)

    _, analysis, _ = dm.decomposed(tmp_path, LeftProduct(), (6,))
    assert "stored matrix on the left" in (analysis.group("fc").frozen_reason or "")


@pytest.mark.parametrize("name", sorted(dm.MODELS))
def test_macs_count_the_same_layers_as_the_plain_export(tmp_path: Path, name: str) -> None:
    """Linear layers written as `addmm`/`mm`/`bmm` over W.T count as the Linear layers they
    are; a product of two activations (attention) counts in neither form."""
    model = dm.model(name)
    shape = dm.shape(name, model)
    plain, _, feeder = dm.read(tmp_path, dm.export_program(model, shape), "plain.pt2")
    gm, _, _ = dm.decomposed(tmp_path, model, shape)
    macs = count_macs(plain, feeder)
    assert macs > 0 and count_macs(gm, feeder) == macs
    if name == "mlp":  # by hand: one multiply-accumulate per weight, per sample
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert macs == sum(m.in_features * m.out_features for m in linears)
