"""`deadweight prune` and `deadweight example` as users run them: exit codes, files, output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny_models import MLP, export_to

DEADWEIGHT = str(Path(sys.executable).with_name("deadweight"))


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DEADWEIGHT, *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    export_to(MLP(), root / "model.pt2")
    rng = np.random.default_rng(0)
    np.savez(
        root / "data.npz",
        x=rng.normal(size=(80, 6)).astype(np.float32),
        y=rng.integers(0, 4, size=80),
    )
    np.savez(root / "wide.npz", x=rng.normal(size=(80, 9)).astype(np.float32))
    x = rng.normal(size=(80, 6)).astype(np.float32)
    np.savez(root / "far_labels.npz", x=x, y=np.full(80, 10**9))  # the MLP has 4 classes
    np.savez(root / "float_labels.npz", x=x, y=np.full(80, 0.5, dtype=np.float32))
    return root


def test_prune_writes_the_files_of_a_service_job(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(
        "prune",
        "--compensate",  # the first release's flag, before the positionals: mean folding
        files / "model.pt2",
        files / "data.npz",
        "--thresholds",
        "f0.2,0.1:0.3",
        "--metric",
        "agreement",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "agreement" in result.stdout and "baseline" in result.stdout
    assert json.loads((out / "results.json").read_text())["compensate"] == "mean"
    for name in (
        "results.json",
        "results.csv",
        "stats.json",
        "stats.csv",
        "stats.png",
        "tradeoff.png",
        "report.html",
        "pruned-0.pt2",
        "pruned-1.pt2",
    ):
        assert (out / name).is_file(), name


def test_prune_searches_and_recovers(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(
        "prune",
        files / "model.pt2",
        files / "data.npz",
        "--search",
        "--max-metric-drop",
        "0.05",
        "--recover-epochs",
        "1",
        "--compensate",
        "none",
        "--allocation",
        "uniform",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "before recovery" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["search"] and results["recovery"]["epochs"] == 1
    assert (results["compensate"], results["allocation"]) == ("none", "uniform")
    assert results["data"]["holdout"]["samples"] == 16  # 20 % of 80, never trained on
    assert results["candidates"][0]["threshold"] == {"fraction": 0.5}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--thresholds", "0.1:x"], "bad threshold"),
        (["--criterion", "seed", "--thresholds", "0.4"], "criterion 'seed' needs"),
        (["--criterion", "reconstruction", "--thresholds", "0.1:0.4"], "takes fractions"),
        (["--search", "--thresholds", "f0.2"], "drop --thresholds"),
        (["--recover-epochs", "-1"], "recovery epochs"),
        (["--metric", "mse", "--eval-data", "{files}/wide.npz"], "needs labels"),
        (["--eval-data", "{files}/wide.npz"], "the model expects"),
        (["--eval-data", "{files}/missing.npz"], "no such file"),
        (["--eval-data", "{files}/far_labels.npz"], "not one of the model's 4 classes"),
        (["--eval-data", "{files}/float_labels.npz"], "integer class labels"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    files: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{files}", str(files)) for a in args]
    result = _run("prune", files / "model.pt2", files / "data.npz", "--out", tmp_path, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deadweight: error:") and message in lines[0]


def test_a_file_that_is_not_a_model_exits_2(files: Path, tmp_path: Path) -> None:
    result = _run("prune", files / "data.npz", files / "data.npz", "--out", tmp_path)
    assert result.returncode == 2
    assert "not a .pt2 archive" in result.stderr or "unexpected entry" in result.stderr
