"""`deadweight prune`: the service's job, run locally (part of the CLI's composition root).

Only `service.cli` imports this module, inside the `prune` command: it is the one place in
`service/` that reaches the engine, so the API process never imports torch.

The engine runs in the worker's sandboxed child (`worker.sandbox.run_sandboxed`, without
memory or CPU limits here): a native crash in torch then ends this command with one line on
stderr and exit status 3 (`EXIT_ENGINE_DIED`) instead of a silent death by signal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from jobs.job_config import (
    Allocation,
    Compensation,
    Criterion,
    Format,
    JobConfig,
    Metric,
    criterion_for,
)
from pruning.config import PruneConfig, Recovery, parse_thresholds
from pruning.errors import InvalidConfig
from worker.protocol import DatasetSpec, PruneRequest
from worker.sandbox import (
    EngineCrashed,
    EngineDiskFull,
    EngineInternalError,
    EngineKilled,
    Limits,
    SandboxFailure,
    run_sandboxed,
)

# The engine crashed or was killed (documented in the README's Command line section).
EXIT_ENGINE_DIED = 3
EXIT_INTERNAL_ERROR = 1


def prune_locally(args: argparse.Namespace) -> str:
    """Run the job described by the CLI arguments; returns the printed table.

    Raises:
        PruningError, DatasetFileError, OSError: bad input, reported with exit status 2.
    """
    if not args.model.is_file():
        raise InvalidConfig(f"{args.model}: no such file")
    if args.search and args.thresholds:
        raise InvalidConfig("--search finds the fraction itself: drop --thresholds")
    job = _job_config(args)
    # Checked as the engine will check it, before any file is written.
    config = PruneConfig.of(job, args.batch_size, args.device, measure_latency=not args.no_latency)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for path in (args.data, args.eval_data):
        if path is not None and not path.is_file():
            raise InvalidConfig(f"{path}: no such file")
    request = PruneRequest(
        model=str(args.model.resolve()),
        data=_dataset(args.data, args.label_column),
        eval_data=_dataset(args.eval_data, args.label_column) if args.eval_data else None,
        config=job,
        batch_size=config.batch_size,
        device=config.device,
        measure_latency=config.measure_latency,
        out_dir=str(out.resolve()),
        # One line on a crash; Python's own switch asks for the engine's stack as well.
        stack_on_crash=bool(os.environ.get("PYTHONFAULTHANDLER")),
    )
    table = _run_engine(request)
    return f"{table}\nfiles written to {out}/"


def _job_config(args: argparse.Namespace) -> JobConfig:
    """The job the flags describe, as the API would store it (a bad value is refused here)."""
    recovery = None
    if args.recover_epochs is not None:
        recovery = Recovery(
            epochs=args.recover_epochs, lr=args.recover_lr, max_seconds=args.recover_max_seconds
        )
    thresholds = parse_thresholds(args.thresholds) if args.thresholds else None
    return JobConfig(
        criterion=Criterion(args.criterion) if args.criterion else criterion_for(thresholds),
        thresholds=thresholds,  # None: the engine's default sweep
        compensate=Compensation(args.compensate),
        allocation=Allocation(args.allocation),
        recovery=recovery,
        search=args.search,
        seed=args.seed,
        metric=Metric(args.metric) if args.metric else None,
        max_metric_drop=args.max_metric_drop,
        formats=Format.parse_all([Format.PT2, *(args.formats or [])]),
        max_latency_ms=args.max_latency_ms,
    )


def _dataset(path: Path, label_column: str | None) -> DatasetSpec:
    # The format is guessed from the file, as `open_dataset` does without one.
    return DatasetSpec(path=str(path.resolve()), format=None, label_column=label_column)


def _run_engine(request: PruneRequest) -> str:
    """The table, from the engine in its own process; a refusal is an InvalidConfig (exit
    2), a crash one line and exit 3, an internal error one line after its traceback."""
    workdir = Path(tempfile.mkdtemp(prefix="deadweight-prune-"))
    try:
        return str(run_sandboxed(request, workdir / "engine", Limits(0, 0)))
    except EngineDiskFull:
        raise InvalidConfig(f"no space left on the device for {request.out_dir}") from None
    except EngineCrashed as exc:  # its incident names the service's log: not here
        _die(
            f"the engine crashed ({exc.signal_name}) while {exc.activity}: a fault in the "
            "engine or in torch on this model (PYTHONFAULTHANDLER=1 prints its stack)",
            EXIT_ENGINE_DIED,
        )
    except EngineKilled as exc:  # no limits here: the system (its OOM killer) or a user
        how = f"was killed ({exc.signal_name})" if exc.signal_name else "exited without a result"
        _die(f"the engine {how}; the machine may have run out of memory", EXIT_ENGINE_DIED)
    except EngineInternalError as exc:
        _die(f"internal error in the engine: {exc.detail}", EXIT_INTERNAL_ERROR)
    except SandboxFailure as exc:
        raise InvalidConfig(str(exc)) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _die(message: str, status: int) -> NoReturn:
    print(f"deadweight: error: {message}", file=sys.stderr)
    raise SystemExit(status)
