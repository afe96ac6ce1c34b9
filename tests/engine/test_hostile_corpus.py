"""The hostile corpus against the engine's reader and `deadweight prune`: refused, no code ran.

Every file goes through `deadweight prune` with the engine's work done in this process
(`tests.hostile.engine_here`: a child per file would import torch once for each), and one
file of each corpus through the installed `deadweight` executable and its real engine child
(`test_the_real_command_*`). The HTTP side (upload, inspection, job submission and the job
run) is in tests/service/test_hostile_uploads.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pruning.errors import UnsafeModel
from pruning.reader import read_program
from service import cli_prune
from service.cli import main as deadweight
from tests.hostile.archives import Hostile
from tests.hostile.engine_here import run_in_this_process
from tests.hostile.fragile_models import robustness_models
from tests.hostile.unsafe_datasets import hostile_datasets
from tests.hostile.unsafe_models import hostile_models, sample_inputs_with_a_canary


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, canary: Path) -> list[Hostile]:
    return hostile_models(tmp_path_factory.mktemp("models"), canary)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.normal(size=(16, 6)).astype(np.float32))
    return root


@pytest.fixture
def engine_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """`deadweight prune` runs its engine in this process for the test's duration."""
    monkeypatch.setattr(cli_prune, "run_sandboxed", run_in_this_process)


def _real_prune(model: Path, data: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The installed `deadweight prune`, as users start it (its engine in a child)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("deadweight")), "prune", str(model), str(data),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_reader_refuses_every_hostile_model(
    models: list[Hostile], canary: Path, tmp_path: Path
) -> None:
    assert len(models) >= 15
    for item in models:
        path = tmp_path / "m.pt2"
        path.write_bytes(item.data)
        with pytest.raises(UnsafeModel) as refused:
            read_program(path)
        assert re.search(item.reason, str(refused.value), re.I), (item.name, str(refused.value))
    assert list(canary.iterdir()) == []


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> list[Hostile]:
    return robustness_models(tmp_path_factory.mktemp("fragile"))


def test_the_reader_refuses_what_once_crashed_or_ran_for_hours(
    fragile: list[Hostile], tmp_path: Path
) -> None:
    """Each was an unexpected exception, a SIGSEGV or hours of CPU before issue 10."""
    assert len(fragile) >= 16
    for item in fragile:
        path = tmp_path / "m.pt2"
        path.write_bytes(item.data)
        started = time.monotonic()
        with pytest.raises(UnsafeModel) as refused:
            read_program(path)
        assert re.search(item.reason, str(refused.value), re.I), (item.name, str(refused.value))
        assert time.monotonic() - started < 10, item.name


@pytest.mark.usefixtures("engine_here")
def test_prune_exits_2_with_one_line_on_what_once_crashed(
    fragile: list[Hostile], files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for item in fragile:
        path = tmp_path / "m.pt2"
        path.write_bytes(item.data)
        code = deadweight(["prune", str(path), str(files / "data.npz"), "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert code == 2, (item.name, err)
        assert err.startswith("deadweight: error:") and "\n" not in err, (item.name, err)


def test_the_real_command_refuses_the_segfaulting_batch_norm(
    fragile: list[Hostile], files: Path, tmp_path: Path
) -> None:
    """Before issue 10 this process died of SIGSEGV with nothing on stderr."""
    path = tmp_path / "m.pt2"
    path.write_bytes(next(m for m in fragile if "SIGSEGV" in m.name).data)
    proc = _real_prune(path, files / "data.npz", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "batch norm over 100000000 channels" in proc.stderr


@pytest.mark.usefixtures("engine_here")
def test_prune_exits_2_on_every_hostile_model(
    models: list[Hostile], canary: Path, files: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for item in models:
        path = tmp_path / "m.pt2"
        path.write_bytes(item.data)
        code = deadweight(["prune", str(path), str(files / "data.npz"), "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert code == 2, item.name
        assert err.startswith("deadweight: error:") and "\n" not in err, (item.name, err)
    assert list(canary.iterdir()) == []


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import MLP, export_to

    torch.manual_seed(0)
    return export_to(MLP(), tmp_path_factory.mktemp("model") / "model.pt2")


@pytest.mark.usefixtures("engine_here")
def test_prune_exits_2_on_every_hostile_dataset(
    model: Path, canary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for item in hostile_datasets(canary):
        path = tmp_path / item.filename
        path.write_bytes(item.data)
        code = deadweight(["prune", str(model), str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert code == 2, item.name
        assert re.search(item.reason, err, re.I), (item.name, err)
    assert list(canary.iterdir()) == []


def test_the_real_command_refuses_too(models: list[Hostile], canary: Path, files: Path,
                                      tmp_path: Path) -> None:  # fmt: skip
    """One run of the installed `deadweight` executable, as users start it."""
    path = tmp_path / "m.pt2"
    path.write_bytes(next(m for m in models if m.name == "weight marked use_pickle").data)
    proc = _real_prune(path, files / "data.npz", tmp_path / "out")
    assert proc.returncode == 2 and "pickle" in proc.stderr
    assert list(canary.iterdir()) == []


def test_the_real_command_refuses_a_hostile_dataset(
    model: Path, canary: Path, tmp_path: Path
) -> None:
    """The dataset corpus's one run through the executable and its engine child."""
    item = next(d for d in hostile_datasets(canary) if d.name == "npz object array")
    path = tmp_path / item.filename
    path.write_bytes(item.data)
    proc = _real_prune(model, path, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deadweight: error:"), proc.stderr
    assert re.search(item.reason, lines[0], re.I), lines[0]
    assert list(canary.iterdir()) == []


def test_example_inputs_are_never_unpickled(canary: Path, files: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(sample_inputs_with_a_canary(tmp_path, canary))
    program = read_program(path)
    assert program.example_inputs is None
    assert deadweight(["prune", str(path), str(files / "data.npz"), "--out", str(tmp_path)]) == 0
    assert list(canary.iterdir()) == []


def test_archive_size_and_entry_caps(tmp_path: Path) -> None:
    from pruning.reader import ArchiveLimits
    from tests.hostile.archives import valid_model

    path = tmp_path / "m.pt2"
    path.write_bytes(valid_model(tmp_path))
    read_program(path)  # within the default caps
    with pytest.raises(UnsafeModel, match="expands to"):
        read_program(path, ArchiveLimits(max_total_bytes=10_000))
    with pytest.raises(UnsafeModel, match="entries"):
        read_program(path, ArchiveLimits(max_entries=5))
    with pytest.raises(UnsafeModel, match="larger than it declares or allowed"):
        read_program(path, ArchiveLimits(max_json_bytes=1000))
