"""ONNX copies (formats pt2 + onnx): each candidate's `.onnx` and the baseline's passes
onnx.checker and, run with ONNX Runtime, agrees with its program (the candidate's `.pt2`, the
uploaded model) on rows the engine's own check did not use and at batch sizes it was not
exported with; results.csv carries the copies; a model whose ops do not convert gets notes,
not a failure."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from jobs.job_config import Format
from pruning.config import PruneConfig, Threshold
from pruning.data import ArrayData
from pruning.evaluate import first_output
from pruning.onnx_export import (
    ONNX_CHECK_ROWS,
    ONNX_RTOL,
    OnnxNotWritten,
    OnnxUnavailable,
    Reference,
    program_reference,
    write_onnx,
)
from pruning.reader import read_program
from pruning.report.files import write_results
from pruning.report.onnx_cells import ONNX_COLUMNS
from pruning.results import Results
from pruning.sweep import DataInput, run
from tests.engine.sample_results import make_results
from tests.tiny_models import MLP, export_to, randomize_bn

SAMPLES = 64  # the engine evaluates and checks the first ONNX_CHECK_ROWS; the test the rest
FORMATS = (Format.PT2, Format.ONNX)


class ResidualCNN(nn.Module):
    """Conv -> BN -> ReLU, a residual block with BatchNorm, pooling, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 8, 8)
        h = torch.relu(self.bn1(self.conv1(x)))  # (N, 8, 8, 8)
        h = torch.relu(h + self.bn2(self.conv2(h)))  # residual add: conv1 and conv2 coupled
        h = torch.relu(self.conv3(h)).mean(dim=(2, 3))  # (N, 6)
        return self.head(h)  # (N, 4)


class OddMaxPool(nn.Module):
    """Adaptive max pooling to a size that does not divide the input's (torch exports it, its
    ONNX exporter has no conversion for it) after a prunable conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 7, 7)
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))  # (N, 4, 7, 7)
        return nn.functional.adaptive_max_pool2d(h, 3).flatten(1)  # (N, 36)


def _prune(
    tmp: Path, model: nn.Module, shape: tuple[int, ...], fractions: tuple[float, ...] = (0.5,)
) -> tuple[Path, Results, np.ndarray]:
    torch.manual_seed(0)
    model = randomize_bn(model).eval()
    x = np.random.default_rng(0).normal(size=(SAMPLES, *shape)).astype(np.float32)
    out = tmp / "out"
    out.mkdir()
    config = PruneConfig(
        thresholds=tuple(Threshold(fraction=f) for f in fractions),
        formats=FORMATS,
        batch_size=SAMPLES,
    )
    model_path = export_to(model, tmp / "model.pt2", d_in=shape)
    evaluation = DataInput(ArrayData(x[:ONNX_CHECK_ROWS], None), ONNX_CHECK_ROWS, False)
    results = run(
        model_path, DataInput(ArrayData(x, None), SAMPLES, False), evaluation, config, out
    )
    return out, results, x


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def pruned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Results, np.ndarray]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "mlp":
        return _prune(tmp, MLP(), (6,), (0.3, 0.5))
    return _prune(tmp, ResidualCNN(), (3, 8, 8))


def _assert_copy_agrees(copy: dict[str, object], out: Path, program: Path, x: np.ndarray) -> None:
    """`copy` (a results.json entry) passes the checker and, run with ONNX Runtime, gives the
    outputs of `program` (read with the safe reader) within the tolerance."""
    onnx_path = out / str(copy["file"])
    assert copy["bytes"] == onnx_path.stat().st_size
    assert copy["checked_rows"] == ONNX_CHECK_ROWS
    assert isinstance(copy["max_abs_diff"], float) and isinstance(copy["tolerance"], float)
    assert 0 <= copy["max_abs_diff"] <= copy["tolerance"]
    onnx.checker.check_model(str(onnx_path), full_check=True)
    module = read_program(program).module()  # the file, as the safe reader reads it
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    # Rows past the engine's check, at two batch sizes the program was not exported with.
    for rows in (x[ONNX_CHECK_ROWS : ONNX_CHECK_ROWS + 5], x[ONNX_CHECK_ROWS + 5 :]):
        got = session.run(None, {name: rows})[0]
        with torch.inference_mode():
            want = first_output(module(torch.from_numpy(rows))).numpy()
        assert got.shape == want.shape == (len(rows), 4)  # both models have 4 outputs
        scale = max(float(np.abs(want).max()), 1.0)
        assert float(np.abs(got - want).max()) <= ONNX_RTOL * scale


def test_each_onnx_copy_agrees_with_its_pt2_on_rows_the_engine_did_not_check(
    pruned: tuple[Path, Results, np.ndarray],
) -> None:
    out, results, x = pruned
    assert results.candidates and not [n for n in results.notes if "ONNX" in n]
    published = json.loads((out / "results.json").read_text())
    for cand, entry in zip(results.candidates, published["candidates"], strict=True):
        assert entry["onnx"]["file"] == f"pruned-{cand.index}.onnx"
        _assert_copy_agrees(entry["onnx"], out, out / cand.artifact, x)


def test_the_baseline_copy_agrees_with_the_uploaded_model(
    pruned: tuple[Path, Results, np.ndarray],
) -> None:
    out, results, x = pruned
    copy = json.loads((out / "results.json").read_text())["baseline"]["onnx"]
    assert copy is not None and copy == results.baseline.onnx
    assert copy["file"] == "baseline.onnx"
    _assert_copy_agrees(copy, out, out.parent / "model.pt2", x)


def test_results_csv_carries_each_copy(pruned: tuple[Path, Results, np.ndarray]) -> None:
    out, results, _ = pruned
    with (out / "results.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), list(reader)
    assert header.index("latency_batch_p90_ms") + 1 == header.index(ONNX_COLUMNS[0])
    assert header[header.index(ONNX_COLUMNS[0]) :][: len(ONNX_COLUMNS)] == list(ONNX_COLUMNS)
    copies = [results.baseline.onnx] + [c.onnx for c in results.candidates]
    assert [r["index"] for r in rows] == ["baseline"] + [str(c.index) for c in results.candidates]
    for row, copy in zip(rows, copies, strict=True):
        assert copy is not None
        assert row["onnx_file"] == copy["file"] and int(row["onnx_bytes"]) == copy["bytes"]
        assert float(row["onnx_max_abs_diff"]) == copy["max_abs_diff"]  # full precision
        assert float(row["onnx_tolerance"]) == copy["tolerance"]


def test_without_onnx_the_csv_columns_are_there_and_empty(tmp_path: Path) -> None:
    """The header does not depend on the job's formats: a CSV reader sees one shape."""
    write_results(make_results(), tmp_path)
    with (tmp_path / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(row[c] == "" for row in rows for c in ONNX_COLUMNS)


def test_a_model_whose_ops_do_not_convert_gets_notes_and_its_pt2_files(tmp_path: Path) -> None:
    out, results, _ = _prune(tmp_path, OddMaxPool(), (3, 7, 7))
    assert results.candidates and results.baseline.onnx is None
    assert results.notes[0] == (
        "baseline: no ONNX file (torch's ONNX exporter has no conversion for "
        "aten.adaptive_max_pool2d.default)"
    )
    for cand in results.candidates:
        assert cand.onnx is None and (out / cand.artifact).is_file()
        assert (
            f"candidate {cand.index}: no ONNX file (torch's ONNX exporter has no conversion "
            "for aten.adaptive_max_pool2d.default)"
        ) in results.notes
    assert not list(out.glob("*.onnx")) and not list(out.glob(".tmp-*"))


def test_a_copy_beyond_the_tolerance_is_not_published(tmp_path: Path) -> None:
    layer = nn.Linear(3, 2).eval()
    batch = (torch.ones(2, 3),)
    program = torch.export.export(layer, batch)
    with torch.inference_mode():
        off = layer(*batch) + 0.01  # a reference the copy cannot match
    with pytest.raises(OnnxNotWritten, match=r"differ from the pruned model's by 0\.01"):
        write_onnx(program, tmp_path / "pruned-0.onnx", Reference([batch], [off]))
    assert not list(tmp_path.iterdir())  # neither the file nor its temporary


def test_without_the_extra_the_copy_is_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    program = torch.export.export(nn.Linear(2, 2), (torch.zeros(1, 2),))
    with pytest.raises(OnnxUnavailable, match=r"pip install 'deadweight\[onnx\]'"):
        write_onnx(program, tmp_path / "pruned-0.onnx", Reference([], []))


def test_a_program_that_fails_on_the_check_rows_gets_a_note_not_an_error() -> None:
    """The baseline's program is the user's: whatever it raises on the check rows (here rows
    of the wrong width) becomes the copy's note, not a failed job."""
    program = torch.export.export(nn.Linear(3, 2), (torch.ones(4, 3),))
    with pytest.raises(OnnxNotWritten, match="the program does not run on the rows"):
        program_reference(program, [(torch.ones(4, 5),)])
