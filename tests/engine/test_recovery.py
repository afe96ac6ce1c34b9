"""Recovery: distillation into the pruned model, seeded, cancellable, and undone when it
diverges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.job_config import Metric
from pruning.config import PruneConfig, Recovery, Threshold
from pruning.data import ArrayData, Feeder
from pruning.evaluate import Evaluator
from pruning.holdout import Subset, holdout_mask
from pruning.reader import read_program
from pruning.recovery import Shuffled, distil
from pruning.sweep import run
from tests.engine.blob_classifier import Trained, cut, data, train_blob_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_blob_classifier(tmp_path_factory.mktemp("m"))


def test_recovery_raises_agreement_with_the_original_on_held_out_data(trained) -> None:  # type: ignore[no-untyped-def]
    path, x, _ = trained
    teacher, student, analysis = cut(path, x, keep=6)
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
    config = PruneConfig(
        thresholds=(Threshold(fraction=0.7),),
        recovery=Recovery(epochs=2),
        seed=3,
        measure_latency=False,
    )
    weights = []
    for run_dir in ("a", "b"):
        out = tmp_path / run_dir
        out.mkdir()
        results = run(path, data(x, y), None, config, out)
        (cand,) = results.candidates
        assert cand.recovery is not None and cand.recovery["steps"] > 0
        assert cand.metric_before_recovery is not None
        weights.append(read_program(out / cand.artifact).state_dict)
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    other = PruneConfig(
        thresholds=config.thresholds, recovery=Recovery(epochs=2), seed=4, measure_latency=False
    )
    (tmp_path / "c").mkdir()
    run(path, data(x, y), None, other, tmp_path / "c")
    third = read_program(tmp_path / "c" / "pruned-0.pt2").state_dict
    assert any(not torch.equal(third[n], weights[0][n]) for n in third)  # the seed matters


def test_cancel_during_recovery_stops_the_run(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pruning.errors import Cancelled

    path, x, y = trained
    stages: list[str] = []
    config = PruneConfig(thresholds=(Threshold(fraction=0.5),), recovery=Recovery(epochs=50))
    with pytest.raises(Cancelled):
        run(
            path,
            data(x, y),
            None,
            config,
            tmp_path,
            progress=lambda stage, fraction: stages.append(f"{stage}:{fraction:.2f}"),
            should_cancel=lambda: any(
                s.startswith("candidates:0.0") and s != "candidates:0.00" for s in stages
            ),
        )
    assert not (tmp_path / "pruned-0.pt2").exists()  # stopped inside the training loop


def test_recovery_refuses_half_precision_and_undoes_a_divergence(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import pruning.recovery
    from pruning.errors import InvalidConfig

    path, x, _ = trained
    teacher, student, analysis = cut(path, x, keep=6)
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


def test_the_shuffle_buffer_is_bounded_in_bytes_and_hands_out_every_row_once() -> None:
    """Rows of 256 KiB (and an 8-byte label) under a bound of 64 such rows: windows of 64
    rows, each shuffled, every row exactly once; the job's memory then stays the same
    whatever the number of samples."""
    x = np.repeat(np.arange(100, dtype=np.float32)[:, None], 65536, axis=1)  # (100, 65536)
    shuffled = Shuffled(ArrayData(x, np.arange(100)), seed=0, buffer_bytes=64 * (65536 * 4 + 8))
    ids = [int(v) for bx, by in shuffled.batches(10) for v in by]
    out = [int(v) for bx, _ in shuffled.batches(10) for v in bx[:, 0]]
    assert ids == out  # rows and labels stay together
    assert sorted(ids) == list(range(100))
    assert set(ids[:64]) == set(range(64)) and ids[:64] != list(range(64))
    assert set(ids[64:]) == set(range(64, 100))


def test_data_that_fits_the_buffer_is_one_seeded_permutation() -> None:
    """What the buffer held before it had a byte bound, so a job's recovery is unchanged."""
    x = np.arange(300, dtype=np.float32)[:, None]
    ids = [int(v) for bx, _ in Shuffled(ArrayData(x), seed=3).batches(32) for v in bx[:, 0]]
    assert ids == np.random.default_rng(3).permutation(300).tolist()
