"""Recovery, the hold-out split, the budget search and the notes on degenerate candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pruning.config import Compensation, Criterion, Metric, PruneConfig, Recovery, Threshold
from pruning.data import ArrayData, Feeder
from pruning.evaluate import Evaluator
from pruning.graph.walk import analyse
from pruning.holdout import Subset, holdout_mask
from pruning.reader.archive import read_program
from pruning.recovery import distil, reestimate_batchnorm
from pruning.search import PROBES
from pruning.surgery import apply_plan
from pruning.sweep import DataInput, run
from tests.tiny_models import MLP, export_to, randomize_bn


class Wide(nn.Module):
    """8 -> 64 -> 64 -> 4: wide enough that a deep cut hurts and recovery can help."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(8, 64), nn.Linear(64, 64), nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """Four Gaussian blobs, a classifier trained on them for a moment."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 2
    y = rng.integers(0, 4, size=800)
    x = (centers[y] + rng.normal(size=(800, 8))).astype(np.float32)
    model = Wide()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    return export_to(model.eval(), tmp_path_factory.mktemp("m") / "m.pt2", d_in=8), x, y


def _data(x: np.ndarray, y: np.ndarray | None) -> DataInput:
    return DataInput(ArrayData(x, y), len(x), y is not None)


def _cut(path: Path, x: np.ndarray, keep: int) -> tuple[torch.fx.GraphModule, ...]:
    """The original and a copy cut to `keep` neurons per layer, without compensation."""
    gm = read_program(path).module()
    analysis = analyse(gm)
    plan = {g.name: list(range(keep)) for g in analysis.prunable}
    return gm, apply_plan(gm, analysis, plan), analysis  # type: ignore[return-value]


def test_recovery_raises_agreement_with_the_original_on_held_out_data(trained) -> None:  # type: ignore[no-untyped-def]
    path, x, _ = trained
    teacher, student, analysis = _cut(path, x, keep=6)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 64)
    mask = holdout_mask(len(x), 0.25, seed=0)
    train, held = Subset(ArrayData(x), ~mask), Subset(ArrayData(x), mask)
    evaluator = Evaluator(Metric.AGREEMENT, held, feeder)
    evaluator.evaluate(teacher, record_reference=True)
    before = evaluator.evaluate(student)
    report = distil(
        student, teacher, train, int((~mask).sum()), feeder,
        Recovery(epochs=3, lr=1e-2), Metric.AGREEMENT, seed=0,
    )  # fmt: skip
    after = evaluator.evaluate(student)
    assert report.steps == 3 * -(-int((~mask).sum()) // 32)
    assert after > before + 0.05, (before, after)


def test_recovery_with_a_fixed_seed_gives_the_same_artifact_twice(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(thresholds=(Threshold(fraction=0.7),), recovery=Recovery(epochs=2), seed=3)
    weights = []
    for run_dir in ("a", "b"):
        out = tmp_path / run_dir
        out.mkdir()
        results = run(path, _data(x, y), None, config, out)
        (cand,) = results.candidates
        assert cand.recovery is not None and cand.recovery["steps"] > 0
        assert cand.metric_before_recovery is not None
        weights.append(read_program(out / cand.artifact).state_dict)
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    other = PruneConfig(thresholds=config.thresholds, recovery=Recovery(epochs=2), seed=4)
    (tmp_path / "c").mkdir()
    run(path, _data(x, y), None, other, tmp_path / "c")
    third = read_program(tmp_path / "c" / "pruned-0.pt2").state_dict
    assert any(not torch.equal(third[n], weights[0][n]) for n in third)  # the seed matters


def test_linear_compensation_without_eval_data_is_scored_on_held_out_rows(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    results = run(
        path, _data(x, y), None, PruneConfig(thresholds=(Threshold(fraction=0.5),)), tmp_path
    )
    assert results.data["evaluation"] == "dataset, held-out rows"
    assert "training" not in results.data and results.data["holdout"]["samples"] == 160
    (tmp_path / "mean").mkdir()
    config = PruneConfig(thresholds=(Threshold(fraction=0.5),), compensate=Compensation.MEAN)
    plain = run(path, _data(x, y), None, config, tmp_path / "mean")
    assert plain.data == {"statistics": "dataset", "evaluation": "dataset"}  # nothing fitted


def test_recovery_without_eval_data_holds_out_a_seeded_part(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(thresholds=(Threshold(fraction=0.5),), recovery=Recovery(epochs=1))
    results = run(path, _data(x, y), None, config, tmp_path)
    holdout = results.data["holdout"]
    assert holdout["samples"] == 160 and holdout["seed"] == 0
    assert results.data["training"] == "dataset, rows not held out"
    published = json.loads((tmp_path / "results.json").read_text())
    assert published["data"]["holdout"]["samples"] == 160
    assert published["recovery"]["epochs"] == 1
    # The baseline is scored on the held-out rows only.
    mask = holdout_mask(800, 0.2, seed=0)
    model = read_program(path).module()
    with torch.no_grad():
        pred = model(torch.from_numpy(x[mask])).argmax(-1).numpy()
    assert results.baseline.metric == pytest.approx(float((pred == y[mask]).mean()))


def test_batchnorm_statistics_are_re_estimated_from_the_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomize_bn(MLP().eval())
    gm = read_program(export_to(model, tmp_path / "bn.pt2")).module()
    feeder = Feeder(analyse(gm).inputs, torch.device("cpu"), 32)
    x = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    assert reestimate_batchnorm(gm, feeder(ArrayData(x))) == 1
    with torch.no_grad():
        h = model.fc1(torch.from_numpy(x)).double()  # what the BatchNorm normalises
    torch.testing.assert_close(
        gm.get_buffer("bn.running_mean").double(), h.mean(0), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        gm.get_buffer("bn.running_var").double(), h.var(0), rtol=1e-5, atol=1e-6
    )


def test_search_recommends_a_candidate_within_budget_and_the_next_probe_is_not(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(search=True, compensate=Compensation.NONE, max_metric_drop=0.02)
    results = run(path, _data(x[:400], y[:400]), _data(x[400:], y[400:]), config, tmp_path)
    assert results.search and len(results.candidates) == PROBES
    fractions = [c.threshold["fraction"] for c in results.candidates]
    assert fractions[0] == 0.5 and len(set(fractions)) == PROBES
    best = next(c for c in results.candidates if c.index == results.recommended)
    assert best.metric_drop <= 0.02
    larger = [c for c in results.candidates if c.threshold["fraction"] > best.threshold["fraction"]]
    if larger:
        nearest = min(larger, key=lambda c: c.threshold["fraction"])
        assert nearest.metric_drop > 0.02
    assert best.parameters == min(c.parameters for c in results.candidates if c.metric_drop <= 0.02)


def test_a_layer_left_with_one_neuron_is_named_in_the_notes(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(criterion=Criterion.VARIANCE, thresholds=(Threshold(std=1e9),))
    results = run(path, _data(x, y), None, config, tmp_path)
    assert results.candidates[0].kept == {"fc1": 1, "fc2": 1}
    assert any("candidate 0 leaves fc1, fc2 with a single neuron" in n for n in results.notes)


class ConstantFallback(nn.Module):
    """fc2's neuron 0 is a constant 5 that votes for class 0; neurons 1-3 carry the signal."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(2, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]) * 0.2)
            self.fc1.bias.zero_()
            self.fc2.weight.copy_(torch.eye(4))
            self.fc2.weight[0] = 0.0
            self.fc2.bias.copy_(torch.tensor([5.0, 0, 0, 0]))
            self.out.weight.copy_(torch.tensor([[0.1, 0, 0, 0], [0, 50, 0, 0], [0, 0, 50, 50]]))
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_a_candidate_that_predicts_one_class_is_named_in_the_notes(tmp_path: Path) -> None:
    path = export_to(ConstantFallback().eval(), tmp_path / "c.pt2", d_in=2)
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    # seed drops neurons whose |mean| and std are both below the threshold: every signal
    # neuron (mean < 0.2) goes, fc2's constant 5 stays, and only class 0 is left.
    config = PruneConfig(
        criterion=Criterion.SEED,
        thresholds=(Threshold(mean=1.0, std=1e9),),
        compensate=Compensation.NONE,
    )
    results = run(path, _data(x, None), None, config, tmp_path)
    assert results.candidates[0].kept["fc2"] == 1
    assert "candidate 0 predicts a single class for every sample" in results.notes


def test_cancel_during_recovery_stops_the_run(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pruning.errors import Cancelled

    path, x, y = trained
    stages: list[str] = []
    config = PruneConfig(thresholds=(Threshold(fraction=0.5),), recovery=Recovery(epochs=50))
    with pytest.raises(Cancelled):
        run(
            path,
            _data(x, y),
            None,
            config,
            tmp_path,
            progress=lambda stage, fraction: stages.append(f"{stage}:{fraction:.2f}"),
            should_cancel=lambda: any(
                s.startswith("candidates:0.0") and s != "candidates:0.00" for s in stages
            ),
        )
    assert not (tmp_path / "pruned-0.pt2").exists()  # stopped inside the training loop


def test_groups_past_the_gram_limit_fall_back_to_mean_folding(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import pruning.compensation

    path, x, y = trained
    monkeypatch.setattr(pruning.compensation, "MAX_GRAM_WIDTH", 32)  # both groups are 64 wide
    metrics = {}
    for mode in (Compensation.LINEAR, Compensation.MEAN):
        out = tmp_path / mode.value
        out.mkdir()
        config = PruneConfig(thresholds=(Threshold(fraction=0.6),), compensate=mode)
        evaluation = _data(x[600:], y[600:])
        metrics[mode] = (
            run(path, _data(x[:600], y[:600]), evaluation, config, out).candidates[0].metric
        )
    assert metrics[Compensation.LINEAR] == metrics[Compensation.MEAN]


def test_auto_allocation_searches_with_both_and_recommends_the_smallest_within_budget(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from pruning.config import Allocation
    from pruning.errors import InvalidConfig

    path, x, y = trained
    config = PruneConfig(search=True, allocation=Allocation.AUTO, max_metric_drop=0.02)
    results = run(path, _data(x[:400], y[:400]), _data(x[400:], y[400:]), config, tmp_path)
    assert [c.index for c in results.candidates] == list(range(2 * PROBES))
    assert [c.allocation for c in results.candidates] == ["global"] * PROBES + ["uniform"] * PROBES
    within = [c for c in results.candidates if c.metric_drop <= 0.02]
    best = next(c for c in results.candidates if c.index == results.recommended)
    assert best.parameters == min(c.parameters for c in within)
    with pytest.raises(InvalidConfig, match="needs search"):
        PruneConfig(allocation=Allocation.AUTO)


class ConvBN(nn.Module):
    """conv -> BatchNorm -> ReLU -> flatten (a fixed-size view when exported statically)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 4, 4)
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_batchnorm_re_estimation_of_a_fixed_batch_model_measures_only_the_data(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = randomize_bn(ConvBN().eval())
    path = export_to(model, tmp_path / "s.pt2", d_in=(1, 4, 4), dynamic=False)  # batch 4
    gm = read_program(path).module()
    feeder = Feeder(analyse(gm).inputs, torch.device("cpu"), 64)
    x = np.random.default_rng(0).normal(size=(10, 1, 4, 4)).astype(np.float32)  # 4 + 4 + 2
    assert reestimate_batchnorm(gm, feeder(ArrayData(x))) == 1
    with torch.no_grad():
        h = model.conv(torch.from_numpy(x)).double()  # (10, 6, 4, 4), padding rows excluded
    direct = h.movedim(1, -1).reshape(-1, 6)
    torch.testing.assert_close(
        gm.get_buffer("bn.running_mean").double(), direct.mean(0), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        gm.get_buffer("bn.running_var").double(), direct.var(0), rtol=1e-5, atol=1e-6
    )


def test_recovery_refuses_half_precision_and_undoes_a_divergence(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import pruning.recovery
    from pruning.errors import InvalidConfig

    path, x, _ = trained
    teacher, student, analysis = _cut(path, x, keep=6)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 64)
    with pytest.raises(InvalidConfig, match="float16"):
        distil(
            student.half(), teacher, ArrayData(x), len(x), feeder, Recovery(), Metric.AGREEMENT,
            seed=0,
        )  # fmt: skip
    student = student.float()
    start = {n: p.clone() for n, p in student.named_parameters()}
    monkeypatch.setattr(pruning.recovery, "_loss", lambda *a: torch.tensor(float("nan")))
    report = distil(
        student, teacher, ArrayData(x), len(x), feeder, Recovery(), Metric.AGREEMENT, seed=0
    )
    assert report.diverged and report.steps == 0
    for name, p in student.named_parameters():
        assert torch.equal(p, start[name]), name


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


def test_a_subset_yields_full_batches_of_its_rows_in_order() -> None:
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25)
    mask = holdout_mask(25, 0.4, seed=1)
    batches = list(Subset(ArrayData(x, y), mask).batches(4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]  # 10 rows held out
    got = np.concatenate([b[1] for b in batches if b[1] is not None])
    assert got.tolist() == np.flatnonzero(mask).tolist()
    assert np.concatenate([b[0] for b in batches]).tolist() == x[mask].tolist()


def test_a_config_survives_the_round_trip_through_a_stored_job() -> None:
    from pruning.config import (
        Allocation,
        Compensation,
        Criterion,
        Metric,
        PruneConfig,
        Recovery,
        Threshold,
    )
    from pruning.config_json import config_from_json, config_to_json

    config = PruneConfig(
        criterion=Criterion.VARIANCE,
        thresholds=(Threshold(fraction=0.3), Threshold(fraction=0.6)),
        compensate=Compensation.MEAN,
        allocation=Allocation.UNIFORM,
        recovery=Recovery(epochs=2, lr=0.01, max_seconds=5.0),
        seed=7,
        metric=Metric.AGREEMENT,
        max_metric_drop=0.02,
        batch_size=16,
        device="cpu",
    )
    stored = config_to_json(config)
    assert config_from_json(stored, batch_size=16, device="cpu") == config
