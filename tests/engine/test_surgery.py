"""Surgery invariants: keep-all is the identity, a cut equals zeroing, compensation is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation
from pruning.data import ArrayData, Feeder
from pruning.graph import GraphAnalysis, analyse
from pruning.reader import read_program
from pruning.stats import collect
from pruning.surgery import apply_plan, export
from tests.tiny_models import MLP, export_to, randomize_bn

ACTS = [nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardswish, nn.LeakyReLU]


def _load(tmp_path: Path, model: nn.Module) -> tuple[torch.fx.GraphModule, GraphAnalysis, Feeder]:
    gm = read_program(export_to(model, tmp_path / "model.pt2")).module()
    analysis = analyse(gm)
    return gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 64)


def _roundtrip(
    tmp_path: Path, gm: torch.fx.GraphModule, feeder: Feeder, name: str
) -> torch.fx.GraphModule:
    """Export, save and read back with the safe reader: what a user downloads."""
    path = tmp_path / name
    torch.export.save(export(gm, feeder), path)
    return read_program(path).module()


def _zeroing(model: MLP, group: str, removed: list[int]) -> nn.Module:
    """The original model with those neurons' outputs zeroed where the next layer reads them."""
    module = model.drop if group == "fc1" else model.act2

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, removed] = 0
        return out

    module.register_forward_hook(hook)
    return model


@pytest.mark.parametrize("act", ACTS)
def test_keep_all_reproduces_outputs(tmp_path: Path, act: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = randomize_bn(MLP(act=act)).eval()
    gm, analysis, feeder = _load(tmp_path, model)
    plan = {g.name: list(range(g.width)) for g in analysis.prunable}
    pruned = _roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder, "all.pt2")
    x = torch.randn(33, 6)
    torch.testing.assert_close(pruned(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruned_equals_original_with_neurons_zeroed(
    tmp_path: Path, act: type[nn.Module], seed: int
) -> None:
    torch.manual_seed(seed)
    model = randomize_bn(MLP(act=act), seed).eval()
    gm, analysis, feeder = _load(tmp_path, model)
    rng = np.random.default_rng(seed)
    plan = {
        g.name: sorted(
            rng.choice(g.width, size=int(rng.integers(1, g.width)), replace=False).tolist()
        )
        for g in analysis.prunable
    }
    pruned = _roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder, "cut.pt2")
    reference = model
    for g in analysis.prunable:
        reference = _zeroing(
            reference, g.name, [j for j in range(g.width) if j not in plan[g.name]]
        )
    x = torch.randn(50, 6)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), reference(x), rtol=1e-5, atol=1e-6)
    assert pruned.get_parameter("fc1.weight").shape == (len(plan["fc1"]), 6)
    assert pruned.get_buffer("bn.running_var").shape == (len(plan["fc1"]),)
    assert pruned.get_parameter("fc2.weight").shape == (len(plan["fc2"]), len(plan["fc1"]))
    assert pruned.get_parameter("out.weight").shape == (4, len(plan["fc2"]))


@pytest.mark.parametrize("bias", [True, False])
def test_constant_neurons_removed_with_compensation_leave_outputs_unchanged(
    tmp_path: Path, bias: bool
) -> None:
    torch.manual_seed(0)
    model = MLP(act=nn.GELU, bias=bias).eval()
    dead = [1, 4, 7]
    with torch.no_grad():
        model.fc2.weight[dead] = 0.0  # fc2's neurons 1, 4, 7 output a constant...
        if bias:
            model.fc2.bias[dead] = torch.tensor([0.5, -1.0, 2.0])  # ...that is not zero
    gm, analysis, feeder = _load(tmp_path, model)
    x = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
    stats = collect(gm, {g.taps[0]: g.width for g in analysis.prunable}, feeder(ArrayData(x)))
    tap = analysis.group("fc2").taps[0]
    assert torch.all(stats[tap].std[dead] == 0)
    keep = [j for j in range(10) if j not in dead]
    compensated = _roundtrip(
        tmp_path,
        apply_plan(gm, analysis, {"fc2": keep}, moments=stats, compensate=Compensation.MEAN),
        feeder,
        "c.pt2",
    )
    plain = _roundtrip(tmp_path, apply_plan(gm, analysis, {"fc2": keep}), feeder, "p.pt2")
    xt = torch.randn(40, 6)
    with torch.no_grad():
        torch.testing.assert_close(compensated(xt), model(xt), rtol=1e-5, atol=1e-5)
        if bias:  # without compensation the constant's contribution is lost
            assert not torch.allclose(plain(xt), model(xt), atol=1e-3)


def test_plan_refuses_frozen_groups_and_empty_layers(tmp_path: Path) -> None:
    from pruning.errors import UnsupportedModel

    gm, analysis, _ = _load(tmp_path, MLP())
    with pytest.raises(UnsupportedModel, match="frozen"):
        apply_plan(gm, analysis, {"out": [0]})
    with pytest.raises(UnsupportedModel, match="every neuron"):
        apply_plan(gm, analysis, {"fc1": []})


def test_static_batch_model_is_re_exported_static(tmp_path: Path) -> None:
    model = MLP().eval()
    gm = read_program(export_to(model, tmp_path / "s.pt2", dynamic=False)).module()
    analysis = analyse(gm)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 64)
    program = export(apply_plan(gm, analysis, {"fc1": [0, 3, 5]}), feeder)
    shape = program.graph_signature.user_inputs
    assert shape  # exported
    x = [n for n in program.graph.nodes if n.op == "placeholder"][-1].meta["val"]
    assert tuple(x.shape) == (4, 6)
