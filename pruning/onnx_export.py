"""Each candidate's ONNX copy, and the original's, for jobs whose formats include `onnx`.

The copy is converted from the candidate's pruned program (`torch.onnx.export` with the dynamo
exporter, which takes an `ExportedProgram`), so it keeps the program's batch dimension:
dynamic where the uploaded model's is. Before it is published it must pass `onnx.checker`
and, run with ONNX Runtime (CPU), reproduce that program's outputs (run on the CPU too) on
evaluation rows within `ONNX_RTOL`. The program is what the candidate's `.pt2` holds, and
`pruning.publishing` checks that file against the module that was evaluated.
The original (the baseline) gets a copy the same way, from the uploaded program, so users can
compare pruned and original in their runtime.
A copy that cannot be made or does not agree is not published: the candidate (or the
baseline) gets a note saying why, and the job goes on (its numbers are the `.pt2`'s, which this
does not touch).

`onnx`, `onnxruntime` and `onnxscript` (torch's exporter needs it) are the `onnx` extra, so
they are imported here, lazily: a worker without them writes notes, not files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from jobs.job_config import BASELINE_ONNX, onnx_model_name
from pruning.data import BatchSource, Feeder
from pruning.evaluate import first_output
from pruning.surgery import EXPORT_LOCK

if TYPE_CHECKING:
    import numpy as np

# The largest |ONNX Runtime output - program output| allowed, relative to the program's largest
# |output| (at least 1: outputs near zero are held to 1e-4 absolute). ONNX Runtime fuses and
# reorders float32 arithmetic (a Conv folded with its BatchNorm), so bitwise equality is not
# expected; a wrong conversion is off by far more.
ONNX_RTOL = 1e-4
# Evaluation rows the copy is checked on, as two batches of different sizes (1 row, then the
# rest) where the batch dimension is dynamic, so both the rows and the dynamic size are tried.
ONNX_CHECK_ROWS = 32
_MISSING_EXTRA = (
    "this worker lacks the onnx extra (pip install 'deadweight[onnx]'): onnx, onnxruntime "
    "and onnxscript"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OP = re.compile(r"op='([\w.]+)', overload='(\w+)'")


class OnnxNotWritten(Exception):
    """No ONNX copy of a candidate: the message says why, for the candidate's note."""


class OnnxUnavailable(OnnxNotWritten):
    """This process cannot write ONNX at all (the extra is not installed)."""


@dataclass(frozen=True)
class OnnxCopy:
    """A published, checked ONNX file."""

    file: str
    bytes: int
    max_abs_diff: float  # against the pruned program (its `.pt2`), over `checked_rows` rows
    checked_rows: int
    tolerance: float  # the largest difference that was allowed

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "bytes": self.bytes,
            "max_abs_diff": self.max_abs_diff,
            "checked_rows": self.checked_rows,
            "tolerance": self.tolerance,
        }


@dataclass(frozen=True)
class Reference:
    """The rows a copy is checked on, and the pruned program's outputs on them (CPU)."""

    batches: list[tuple[torch.Tensor, ...]]
    outputs: list[torch.Tensor]

    @property
    def rows(self) -> int:
        return sum(len(b[0]) for b in self.batches)


@dataclass
class OnnxCopies:
    """Writes and checks the candidates' ONNX copies into `out_dir`; a copy that cannot be
    made leaves a note in `notes` (the run's) instead."""

    out_dir: Path
    feeder: Feeder
    source: BatchSource  # the evaluation data
    notes: list[str]
    _batches: list[tuple[torch.Tensor, ...]] | None = None
    _unavailable: str | None = None  # the extra is missing: no candidate tries again

    def write(self, index: int, program: torch.export.ExportedProgram) -> dict[str, Any] | None:
        """Candidate `index`'s checked copy of `program`, the one its `.pt2` holds (its
        results entry), or None and a note."""
        return self._write(onnx_model_name(index), f"candidate {index}", program)

    def write_baseline(self, program: torch.export.ExportedProgram) -> dict[str, Any] | None:
        """The original program's checked copy (`BASELINE_ONNX`), converted and checked as a
        candidate's, so pruned and original compare in the same runtime; or None and a note."""
        return self._write(BASELINE_ONNX, "baseline", program)

    def _write(
        self, name: str, who: str, program: torch.export.ExportedProgram
    ) -> dict[str, Any] | None:
        try:
            if self._unavailable is not None:
                raise OnnxNotWritten(self._unavailable)
            reference = program_reference(program, self._check_batches())
            return write_onnx(program, self.out_dir / name, reference).as_dict()
        except OnnxNotWritten as exc:
            if isinstance(exc, OnnxUnavailable):
                self._unavailable = str(exc)
            self.notes.append(f"{who}: no ONNX file ({exc})")
            return None

    def _check_batches(self) -> list[tuple[torch.Tensor, ...]]:
        if self._batches is None:
            first = next(iter(self.feeder(self.source)))
            inputs = tuple(t.cpu() for t in first.inputs)
            if self.feeder.static_batch is not None:  # the whole (padded) batch, as exported
                self._batches = [inputs]
            else:
                rows = min(first.valid, ONNX_CHECK_ROWS)
                cut = 1 if rows > 1 else rows
                self._batches = [
                    tuple(t[a:b] for t in inputs) for a, b in ((0, cut), (cut, rows)) if b > a
                ]
        return self._batches


def program_reference(
    program: torch.export.ExportedProgram, batches: list[tuple[torch.Tensor, ...]]
) -> Reference:
    """`program`'s outputs on `batches`, on the CPU like ONNX Runtime's: on a GPU, TF32
    convolutions alone would differ from a CPU run by more than the tolerance."""
    # Unlifting builds modules: nothing may be traced beside it (see EXPORT_LOCK).
    with EXPORT_LOCK:
        module = program.module()
    try:
        with torch.inference_mode():
            outputs = [first_output(module(*batch)).detach() for batch in batches]
    except Exception as exc:  # the baseline's program is the user's: it may raise anything
        raise OnnxNotWritten(
            f"the program does not run on the rows it is checked on: {_first_line(exc, None)}"
        ) from None
    return Reference(batches, outputs)


def write_onnx(program: torch.export.ExportedProgram, path: Path, reference: Reference) -> OnnxCopy:
    """Convert `program` to ONNX at `path` (atomically), once it passes `onnx.checker` and
    agrees with `reference` when run with ONNX Runtime.

    Raises:
        OnnxNotWritten: the extra is missing, an op does not convert, the checker or ONNX
            Runtime refuses the file, or its outputs differ beyond the tolerance.
    """
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's exporter imports it; named for the message)
    except ImportError:
        raise OnnxUnavailable(_MISSING_EXTRA) from None
    # torch.onnx re-traces the program (its decompositions): nothing may run a module beside.
    with EXPORT_LOCK:
        try:
            converted = torch.onnx.export(program, dynamo=True, verbose=False, report=False)
        except Exception as exc:  # the exporter raises many kinds of errors
            raise OnnxNotWritten(_conversion_failure(exc)) from None
    assert converted is not None  # with dynamo=True it always returns the program
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        try:
            proto = converted.model_proto
            onnx.save_model(proto, tmp)
        except ValueError as exc:  # protobuf's 2 GiB limit on one message
            raise OnnxNotWritten(
                f"it cannot be written as one file: {_first_line(exc, tmp)}"
            ) from None
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise OnnxNotWritten(f"onnx.checker refuses it: {_first_line(exc, tmp)}") from None
        diff, tolerance = _compare(onnxruntime, tmp, reference)
        if not diff <= tolerance:  # NaN fails too
            raise OnnxNotWritten(
                f"ONNX Runtime's outputs differ from the pruned model's by {diff:.3g}, beyond "
                f"the tolerance {tolerance:.3g}"
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxCopy(path.name, path.stat().st_size, diff, reference.rows, tolerance)


def _compare(onnxruntime: Any, file: Path, reference: Reference) -> tuple[float, float]:
    """The largest |difference| between ONNX Runtime's first output and the reference's, and
    the tolerance for it."""
    options = onnxruntime.SessionOptions()
    # The engine's own thread budget (the worker's setting), not one thread per core.
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(
            str(file), options, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in session.get_inputs()]
        diff, scale = 0.0, 0.0
        for batch, want in zip(reference.batches, reference.outputs, strict=True):
            feeds: dict[str, np.ndarray] = {n: t.numpy() for n, t in zip(names, batch, strict=True)}
            got = torch.from_numpy(session.run(None, feeds)[0]).to(torch.float64)
            want64 = want.to(torch.float64)
            if got.shape != want64.shape:
                raise OnnxNotWritten(
                    f"ONNX Runtime outputs shape {list(got.shape)}, the pruned model "
                    f"{list(want64.shape)}"
                )
            if want64.numel():
                diff = max(diff, float((got - want64).abs().max()))
                scale = max(scale, float(want64.abs().max()))
    except OnnxNotWritten:
        raise
    except Exception as exc:  # onnxruntime's own exception types
        raise OnnxNotWritten(f"ONNX Runtime cannot run it: {_first_line(exc, file)}") from None
    return diff, ONNX_RTOL * max(scale, 1.0)


def _conversion_failure(exc: BaseException) -> str:
    """Why torch's exporter failed, for a user: the op it has no conversion for, if named."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__
    for err in reversed(chain):
        found = _OP.search(str(err))
        if found:
            return f"torch's ONNX exporter has no conversion for {found[1]}.{found[2]}"
    return f"torch's ONNX exporter failed: {_first_line(chain[-1], None)}"


def _first_line(exc: BaseException, file: Path | None) -> str:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    if file is not None:  # the engine's working path is not the user's business
        line = line.replace(str(file), file.name)
    return line[:300]
