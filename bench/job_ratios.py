"""Issue 12's job ratios: `deadweight prune` against its forwards, Torch-Pruning and HTTP.

One round runs, one after the other: `deadweight prune` with 5 fractions (the CLI, as a
user runs it, in a fresh process), the forwards the job cannot avoid (in this process), the
hand-written Torch-Pruning script of `bench.tp_script` (a fresh process), and the same job
through the real service (`bench.service_run`: upload model and data, submit, poll). Each
round gives three ratios, each of two things run next to each other in the same round:

- whole `deadweight prune` / its forwards. The forwards are one bare `inference_mode` pass of
  the original (the read-back `model.pt2`) over the calibration data, which also yields the
  baseline's outputs since the evaluation data is the calibration data (no `--eval-data`),
  plus one pass over the evaluation data per distinct candidate, with the candidates' own
  pruned models: the `pruned-<i>.pt2` the CLI published in this round, read back (trusted:
  we wrote them) before the clock starts, each run once over the data first (unmeasured);
- `deadweight prune` / the Torch-Pruning script (same fractions, same data, batch size 256);
- the HTTP job (from the first upload to the poll that sees it finished) / `deadweight prune`;
- the same job's time in the warm worker (its `started_at` to `finished_at`, the service's
  own clock) / the forwards: what the job costs once the worker has it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.common import Prepared, bare_forward, batches
from bench.service_run import DEADWEIGHT, http_job

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
BATCH_SIZE = 256  # the CLI's and the service's default


@dataclass
class JobRatios:
    model: str
    forwards: list[float] = field(default_factory=list)  # CLI / forwards
    torch_pruning: list[float] = field(default_factory=list)  # CLI / Torch-Pruning script
    http: list[float] = field(default_factory=list)  # HTTP / CLI
    in_worker: list[float] = field(default_factory=list)  # the job in the worker / forwards
    candidates: int = 0


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _running_seconds(record: dict[str, Any]) -> float:
    """The job's time in the (warm) worker: from `started_at` to `finished_at`."""
    started, finished = (datetime.fromisoformat(record[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{done.stderr[-3000:]}")


def cli_command(prepared: Prepared, out: Path) -> list[str]:
    thresholds = ",".join(f"f{f}" for f in FRACTIONS)
    program, data = str(prepared.program), str(prepared.data)
    return [DEADWEIGHT, "prune", program, data, "--thresholds", thresholds, "--out", str(out)]


def _tp_command(prepared: Prepared, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.tp_script",
        prepared.spec.name,
        str(prepared.weights),
        str(prepared.data),
        "--fractions",
        ",".join(str(f) for f in FRACTIONS),
        "--out",
        str(out),
    ]


def _distinct_candidates(out: Path) -> list[Path]:
    """The published candidates, one per distinct file (equal fractions give equal files)."""
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in out.glob("pruned-*.pt2")}
    return sorted(by_hash.values())


def _forwards(prepared: Prepared, out: Path) -> Callable[[], None]:
    """The job's unavoidable passes, every module loaded and called once beforehand."""
    inputs = batches(prepared.data, BATCH_SIZE)
    original = torch.export.load(prepared.program).module()
    candidates = [torch.export.load(p).module() for p in _distinct_candidates(out)]
    for module in (original, *candidates):
        bare_forward(module, inputs)  # warm: the first calls of a loaded program cost more

    def run() -> None:
        bare_forward(original, inputs)  # the statistics' pass; also the baseline's outputs
        for module in candidates:
            bare_forward(module, inputs)

    return run


def measure(prepared: Prepared, folder: Path, service_url: str | None, rounds: int) -> JobRatios:
    """`rounds` rounds of CLI, forwards, Torch-Pruning and (with a service) HTTP."""
    result = JobRatios(prepared.spec.name)
    for i in range(rounds):
        cli_out, tp_out = folder / f"cli-{i}", folder / f"tp-{i}"
        cli = _timed(partial(_run, cli_command(prepared, cli_out)))
        forwards = _forwards(prepared, cli_out)
        result.candidates = len(_distinct_candidates(cli_out))
        bare = _timed(forwards)
        result.forwards.append(cli / bare)
        result.torch_pruning.append(cli / _timed(partial(_run, _tp_command(prepared, tp_out))))
        if service_url is not None:
            start = time.perf_counter()
            record = http_job(service_url, prepared.program, prepared.data, FRACTIONS)
            result.http.append((time.perf_counter() - start) / cli)
            result.in_worker.append(_running_seconds(record) / bare)
        print(
            f"  {prepared.spec.name} round {i + 1}/{rounds}: cli/forwards "
            f"{result.forwards[-1]:.2f}x, cli/torch-pruning {result.torch_pruning[-1]:.2f}x"
            + (f", http/cli {result.http[-1]:.2f}x" if result.http else "")
            + (f", in worker/forwards {result.in_worker[-1]:.2f}x" if result.in_worker else ""),
            flush=True,
        )
    return result
