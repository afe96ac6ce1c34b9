"""A candidate's file written, read back and checked beside the engine's main thread.

The main thread evaluates each pruned module in memory and exports it; saving the program,
reading it back with the safe reader and measuring the file (parameters, bytes, MACs) run
on one background thread while the next candidate is cut and evaluated. The numbers a run
reports stay those of the file a user downloads: the file read back must hold the same
weights and the same ops as the module that was evaluated, and give bitwise the same
outputs on the check rows. When it does not (it should not happen), the file itself is
evaluated instead; when its outputs differ beyond `CHECK_RTOL`, the run fails.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import fx

from pruning.data import Feeder
from pruning.evaluate import count_macs, count_parameters, run_counting_macs
from pruning.reader import read_program
from pruning.surgery import EXPORT_LOCK

CHECK_ROWS = 8  # evaluation rows the file and the module are compared on (dynamic batch)
# How far the read-back file's outputs may be from the module's, relative to the outputs'
# largest magnitude, before a run fails (within it, the file is evaluated on its own).
CHECK_RTOL = 1e-4


class PublishedFileDiffers(RuntimeError):
    """The saved program computes something other than the module that was evaluated."""


@dataclass(frozen=True)
class Published:
    """A saved candidate, measured on the file as the safe reader reads it back."""

    parameters: int
    bytes: int
    macs: int  # per sample
    # None: the file computes exactly what the evaluated module does, so its metric is the
    # file's. Otherwise the read-back module, which must be evaluated itself.
    differing: fx.GraphModule | None


def size_and_macs(
    program: torch.export.ExportedProgram, module: fx.GraphModule, feeder: Feeder, path: Path
) -> tuple[int, int]:
    """The size of `program` as `torch.export.save` writes it (to `path`, then removed), and
    the MACs per sample of `module`, its unlifted form: the original's, beside its
    evaluation."""
    with EXPORT_LOCK:
        torch.export.save(program, path)
        try:
            size = path.stat().st_size
        finally:
            path.unlink()
        return size, count_macs(module, feeder)


def publish_candidate(
    program: torch.export.ExportedProgram,
    memory: fx.GraphModule,
    path: Path,
    check: tuple[torch.Tensor, ...],
    expected: torch.Tensor,
) -> Published:
    """Save `program` to `path` (atomically), read it back with the safe reader and compare
    it with `memory`, the module it was exported from, whose output on `check` is
    `expected`.

    Raises:
        PublishedFileDiffers: the file's outputs on `check` are not within `CHECK_RTOL`.
        UnsafeModel: the reader refuses the file (as it would refuse it from a user).
    """
    # Module work beside the main thread waits while torch.export traces (see EXPORT_LOCK).
    with EXPORT_LOCK:
        tmp = path.with_name(f".tmp-{path.name}")
        torch.export.save(program, tmp)
        tmp.replace(path)
        reloaded = read_program(path)
        loaded = reloaded.module()
        same = _same_state(memory, loaded) and _ops(memory) == _ops(loaded)
        loaded = loaded.to(expected.device)
        out, macs = run_counting_macs(loaded, check)
    rows = int(check[0].shape[0]) if check[0].dim() else 1
    exact = same and out.shape == expected.shape and bool(torch.equal(out, expected))
    if not exact:
        _require_close(path.name, out, expected)
    return Published(
        parameters=count_parameters(reloaded),
        bytes=path.stat().st_size,
        macs=macs // max(rows, 1),
        differing=None if exact else loaded,
    )


def _same_state(a: fx.GraphModule, b: fx.GraphModule) -> bool:
    """Same parameter and buffer names, each bitwise equal."""
    for mine, theirs in (
        (a.named_parameters(), b.named_parameters()),
        (a.named_buffers(), b.named_buffers()),
    ):
        left, right = dict(mine), dict(theirs)
        if left.keys() != right.keys():
            return False
        for name, tensor in left.items():
            other = right[name]
            if tensor.dtype != other.dtype or not torch.equal(tensor.cpu(), other.cpu()):
                return False
    return True


def _ops(gm: fx.GraphModule) -> list[str]:
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def _require_close(name: str, out: torch.Tensor, expected: torch.Tensor) -> None:
    if out.shape != expected.shape:
        raise PublishedFileDiffers(
            f"{name}: the saved program outputs shape {list(out.shape)}, the pruned module "
            f"{list(expected.shape)}"
        )
    got, want = out.to(torch.float64), expected.to(torch.float64)
    scale = float(want.abs().max()) if want.numel() else 0.0
    diff = float((got - want).abs().max()) if want.numel() else 0.0
    if not diff <= CHECK_RTOL * max(scale, 1e-12):  # NaN differences fail too
        raise PublishedFileDiffers(
            f"{name}: the saved program's outputs differ from the pruned module's by {diff:.3g} "
            f"(largest output {scale:.3g}); refusing to publish numbers for it"
        )


class Publisher:
    """Runs `publish_candidate` on one background thread, a candidate at a time."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[int, Future[Published]] = {}

    def submit(
        self,
        index: int,
        program: torch.export.ExportedProgram,
        memory: fx.GraphModule,
        path: Path,
        check: tuple[torch.Tensor, ...],
        expected: torch.Tensor,
    ) -> None:
        """Start publishing candidate `index`, once the one before it is published (so at
        most one waits, and its failure surfaces here)."""
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="deadweight-publish")
        self._futures[index] = self._pool.submit(
            publish_candidate, program, memory, path, check, expected
        )

    def wait(self) -> None:
        """Wait for everything submitted; raise the first failure."""
        for future in self._futures.values():
            future.result()

    def results(self) -> dict[int, Published]:
        """Every candidate's publication, by index (waits for them)."""
        return {index: future.result() for index, future in self._futures.items()}

    def close(self) -> None:
        """Stop: what has not started is dropped, what runs is waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
