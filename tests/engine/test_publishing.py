"""Candidates evaluated in memory while their files are published in the background: the
numbers reported are still those of the downloaded files, a file that computes something
else is caught, and background failures and cancellations reach the caller."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation
from pruning.config import PruneConfig, Threshold
from pruning.data import Batch, DataInput, Feeder
from pruning.errors import Cancelled, UnsafeModel
from pruning.evaluate import count_macs
from pruning.graph import analyse
from pruning.publishing import PublishedFileDiffers, publish_candidate
from pruning.reader import read_program
from pruning.stats import collect
from pruning.surgery import apply_plan, export
from pruning.sweep import run
from tests.tiny_models import export_to, randomize_bn


class ResidualCNN(nn.Module):
    """conv -> BN -> relu, a residual block, pooling, a linear head: what resnets are made of."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.conv1 = nn.Conv2d(12, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 12, 3, padding=1)
        self.head = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = torch.relu(h + self.conv2(torch.relu(self.conv1(h))))
        out: torch.Tensor = self.head(h.mean(dim=(2, 3)))
        return out


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = randomize_bn(ResidualCNN())
    path = export_to(model, tmp_path_factory.mktemp("m") / "cnn.pt2", d_in=(3, 8, 8))
    x = np.random.default_rng(0).normal(size=(90, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(x) + 0.3 * torch.randn(90, 3, 8, 8)).argmax(-1)
    return path, x, y.numpy()


@pytest.mark.parametrize("compensate", [Compensation.LINEAR, Compensation.NONE])
def test_every_reported_number_is_that_of_the_downloaded_file(  # type: ignore[no-untyped-def]
    cnn, tmp_path: Path, compensate: Compensation
) -> None:
    path, x, y = cnn
    fractions = (0.1, 0.3, 0.3, 0.6)  # one duplicate
    config = PruneConfig(
        thresholds=tuple(Threshold(fraction=f) for f in fractions),
        compensate=compensate,
        batch_size=32,
        measure_latency=False,  # timed in test_sweep.py and test_latency.py, not here
    )
    results = run(path, DataInput.of(x, y), None, config, tmp_path)
    assert results.candidates[2].same_as == 1
    xt = torch.from_numpy(x)
    for cand in results.candidates:
        file = tmp_path / cand.artifact
        artifact = torch.export.load(file)  # trusted: written by the engine
        module = artifact.module()
        with torch.inference_mode():  # the file, evaluated on its own, in the run's batches
            pred = torch.cat([module(xt[i : i + 32]) for i in range(0, len(xt), 32)]).argmax(-1)
        accuracy = float((pred.numpy() == y).mean())
        params = sum(p.numel() for p in artifact.parameters())
        feeder = Feeder(analyse(module).inputs, torch.device("cpu"), 32)
        assert cand.metric == pytest.approx(accuracy, abs=1e-12)
        assert cand.metric_drop == pytest.approx(results.baseline.metric - accuracy, abs=1e-12)
        assert cand.parameters == params
        assert cand.bytes == file.stat().st_size
        assert cand.macs == count_macs(module, feeder)
        assert cand.size_reduction == pytest.approx(1 - params / results.baseline.parameters)
    assert results.candidates[-1].parameters < results.baseline.parameters
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / ".baseline.pt2").exists()


def _pruned(
    path: Path, tmp_path: Path
) -> tuple[torch.export.ExportedProgram, torch.fx.GraphModule]:
    gm = read_program(path).module()
    analysis = analyse(gm)
    plan = {g.name: list(range(0, g.width, 2)) for g in analysis.prunable}
    pruned = apply_plan(gm, analysis, plan)
    return export(pruned, Feeder(analysis.inputs, torch.device("cpu"), 8)), pruned


def test_a_file_equal_to_its_module_is_not_evaluated_again(cnn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    program, module = _pruned(cnn[0], tmp_path)
    check = (torch.from_numpy(cnn[1][:8]),)
    with torch.inference_mode():
        expected = module(*check)
    published = publish_candidate(program, module, tmp_path / "p.pt2", check, expected)
    assert published.differing is None
    assert published.bytes == (tmp_path / "p.pt2").stat().st_size


def test_a_file_that_differs_slightly_is_evaluated_itself(cnn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    program, module = _pruned(cnn[0], tmp_path)
    check = (torch.from_numpy(cnn[1][:8]),)
    with torch.inference_mode():
        expected = module(*check)
    nudged = expected * (1 + 1e-6)
    published = publish_candidate(program, module, tmp_path / "p.pt2", check, nudged)
    assert published.differing is not None  # the run evaluates the file instead


def test_a_file_that_computes_something_else_fails_the_run(cnn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    program, module = _pruned(cnn[0], tmp_path)
    check = (torch.from_numpy(cnn[1][:8]),)
    with torch.inference_mode():
        expected = module(*check) + 1.0
    with pytest.raises(PublishedFileDiffers, match="differ from the pruned module"):
        publish_candidate(program, module, tmp_path / "p.pt2", check, expected)


def test_a_failure_in_the_background_is_the_runs(  # type: ignore[no-untyped-def]
    cnn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, x, y = cnn

    def refuse(p: Path) -> None:
        raise UnsafeModel(f"{p.name}: refused")

    monkeypatch.setattr("pruning.publishing.read_program", refuse)
    config = PruneConfig(
        thresholds=(Threshold(fraction=0.2), Threshold(fraction=0.4)), measure_latency=False
    )
    with pytest.raises(UnsafeModel, match=r"pruned-0\.pt2: refused"):
        run(path, DataInput.of(x, y), None, config, tmp_path)
    assert not [t for t in threading.enumerate() if t.name.startswith("deadweight-publish")]


def test_a_cancelled_run_leaves_no_publishing_behind(cnn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = cnn
    seen: list[float] = []

    def progress(stage: str, done: float) -> None:
        if stage == "candidates":
            seen.append(done)

    config = PruneConfig(
        thresholds=tuple(Threshold(fraction=f) for f in (0.2, 0.4, 0.6)), measure_latency=False
    )
    with pytest.raises(Cancelled):
        run(
            path,
            DataInput.of(x, y),
            None,
            config,
            tmp_path,
            progress=progress,
            should_cancel=lambda: bool(seen) and seen[-1] >= 1 / 3,  # in the second candidate
        )
    assert not [t for t in threading.enumerate() if t.name.startswith("deadweight-publish")]


def test_a_shared_copy_leaves_the_original_untouched(tmp_path: Path) -> None:
    """float64 weights and linear compensation: the cut must write into its own tensors."""
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    path = export_to(model.double(), tmp_path / "m.pt2", d_in=5)
    gm = read_program(path).module()
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    analysis = analyse(gm)
    x = np.random.default_rng(0).normal(size=(64, 5))
    taps = {tap: g.width for g in analysis.prunable for tap in g.taps}
    batch = Batch(inputs=(torch.from_numpy(x),), valid=len(x), y=None)  # float64, as the model
    stats = collect(gm, taps, iter([batch]), gram=set(taps))
    first = analysis.prunable[0]  # fc 0's neurons; fc 2 gets their reconstruction
    cut = apply_plan(
        gm,
        analysis,
        {first.name: [0, 2, 4, 6]},
        moments=stats,
        compensate=Compensation.LINEAR,
        share_parameters=True,
    )
    assert all(torch.equal(v, gm.state_dict()[k]) for k, v in before.items())
    assert cut.get_parameter("0.weight").shape[0] == 4
    assert not torch.equal(cut.get_parameter("2.weight"), gm.get_parameter("2.weight")[:, ::2])
    kept = cut.get_parameter("4.weight")  # untouched by the cut: shared, in a new Parameter
    assert kept is not gm.get_parameter("4.weight")
    assert kept.data_ptr() == gm.get_parameter("4.weight").data_ptr()
