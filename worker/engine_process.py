"""The engine's side of the sandbox (`python -m worker.engine_process`).

Reads one request on stdin, runs it, and writes messages on its stdout, one JSON line each
(`worker.protocol`): progress while it works, then a result or a failure. Anything else
printed to stdout by libraries goes to stderr instead, so the protocol stays clean.

- `InspectRequest` -> the model's description (`pruning.describe`);
- `JobRequest` -> None, the files written into its `out_dir`; `PruneRequest` -> the table
  `deadweight prune` prints (a dataset's `format` may be None: guessed from the file);
- `SelfCheckRequest` -> this process's environment names, directory, limits and niceness,
  so that the sandbox itself can be checked;
- with `--standby` it imports what requests need first, then reads its orders (limits,
  directory) before the request (`worker.engine_standby`, `worker.sandbox.standby`);
- any request may say `stack_on_crash=False` (default True: faulthandler prints the Python
  stack of a native crash on stderr).

Failures: a typed refusal sends a `RefusalMessage` (a `DiskFullMessage` when no space was
left, a `FileTooLargeMessage` when a file passed the sandbox's file size limit); any other
exception sends an `IncidentMessage` (an ID and "Type: message") and prints the traceback
under that ID on stderr (the worker's log), so no internal text, path or address reaches a
user. A native crash prints its Python stack (faulthandler) there too.
"""

from __future__ import annotations

import errno
import faulthandler
import logging
import os
import resource
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, assert_never

from jobs.datasets import DatasetFileError, DatasetFormat, open_dataset
from jobs.disk_space import is_disk_full
from pruning.errors import PruningError
from worker.engine_standby import preload, take_orders
from worker.protocol import (
    DatasetSpec,
    DiskFullMessage,
    EngineMessage,
    EngineRequest,
    FileTooLargeMessage,
    IncidentMessage,
    InspectRequest,
    JobRequest,
    ProgressMessage,
    PruneRequest,
    RefusalMessage,
    ResultMessage,
    SelfCheckRequest,
    decode_request,
    encode,
    new_incident,
)
from worker.sandbox.engine_log import ENGINE_LINE_FORMAT, ENGINE_LOG_ENV, ENGINE_LOGGER
from worker.sandbox.standby import STANDBY_ARG

log = logging.getLogger(ENGINE_LOGGER)

# Progress messages on the pipe to the worker, which costs little: often enough that the
# worker's own throttle (`worker.lease.STORE_PROGRESS_EVERY_S`, a database write) always has
# a recent value to pass on.
PIPE_PROGRESS_EVERY_S = 0.2
# Test-only hook: the engine crashes (SIGSEGV) on reaching this stage ("start": at once).
_TEST_CRASH = "DW_TEST_ENGINE_CRASH"
_OUT_OF_MEMORY = (
    "the job ran out of memory within its limit (DEADWEIGHT_JOB_MEMORY_BYTES); "
    "a smaller batch size (DEADWEIGHT_BATCH_SIZE) needs less"
)


class _Channel:
    """The protocol's end: one message per line, progress throttled."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last = ("", 0.0)

    def send(self, message: EngineMessage) -> None:
        self.out.write(encode(message) + "\n")
        self.out.flush()

    def progress(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != self._last[0] or now - self._last[1] >= PIPE_PROGRESS_EVERY_S or fraction >= 1:
            new_stage = stage != self._last[0]
            self.send(ProgressMessage(stage=stage, fraction=fraction))
            self._last = (stage, now)
            if new_stage:
                _crash_if_asked(stage)


def _crash_if_asked(stage: str) -> None:
    if os.environ.get(_TEST_CRASH) == stage:
        import ctypes

        ctypes.string_at(0)  # reads address 0: a real SIGSEGV, as a native fault raises


def _run_job(request: JobRequest | PruneRequest, channel: _Channel) -> Any:
    from pruning import DataInput, PruneConfig, run

    with ExitStack() as stack:

        def data_input(spec: DatasetSpec) -> DataInput:
            ds = stack.enter_context(
                open_dataset(
                    Path(spec.path),
                    DatasetFormat(spec.format) if spec.format else None,
                    label_column=spec.label_column,
                    name=spec.name,
                )
            )
            return DataInput(source=ds, samples=ds.info.samples, has_labels=ds.info.has_labels)

        return run(
            Path(request.model),
            data_input(request.data),
            data_input(request.eval_data) if request.eval_data else None,
            PruneConfig.of(
                request.config,
                request.batch_size,
                request.device,
                request.max_parameters,
                measure_latency=request.measure_latency,
            ),
            Path(request.out_dir),
            progress=channel.progress,
        )


def _self_check() -> dict[str, Any]:
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_CORE")
    }
    return {
        "env": sorted(os.environ),
        "cwd": os.getcwd(),
        "home": os.environ.get("HOME"),
        "tmpdir": os.environ.get("TMPDIR"),
        "limits": limits,
        "nice": os.nice(0),
    }


def _handle(request: EngineRequest, channel: _Channel) -> Any:
    match request:
        case InspectRequest():
            from pruning import describe_model

            return describe_model(Path(request.model), request.max_parameters)
        case JobRequest():
            _run_job(request, channel)
            return None
        case PruneRequest():
            from pruning import report

            return report.format_table(_run_job(request, channel))
        case SelfCheckRequest():
            return _self_check()
        case _:
            assert_never(request)


def main() -> int:
    # The protocol gets the real stdout; everything else printed goes to stderr.
    channel = _Channel(os.fdopen(os.dup(1), "w"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if os.environ.get(ENGINE_LOG_ENV):
        # The worker relays stderr into its JSON log (`worker.sandbox.engine_log`): lines in
        # the form it parses keep their level and logger; warnings become such lines too.
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=ENGINE_LINE_FORMAT)
        logging.captureWarnings(True)
    try:
        if STANDBY_ARG in sys.argv[1:]:  # a warm engine: imports first, then its orders
            preload()
            if not take_orders(sys.stdin):
                return 0  # the worker went without a request for it
        request = decode_request(sys.stdin.read())
        started = time.monotonic()
        if request.stack_on_crash:
            # A native crash prints the Python stack to stderr (the worker's log) first.
            faulthandler.enable()
        _crash_if_asked("start")
        log.info("%s received", type(request).__name__)
        result = _handle(request, channel)
        log.info("%s done in %.1f s", type(request).__name__, time.monotonic() - started)
    except (PruningError, DatasetFileError) as exc:
        channel.send(RefusalMessage(reason=str(exc)))
        return 2
    except MemoryError:
        channel.send(RefusalMessage(reason=_OUT_OF_MEMORY))
        return 2
    except OSError as exc:
        if is_disk_full(exc):
            channel.send(DiskFullMessage(reason="no space left on the device"))
        elif exc.errno == errno.EFBIG:  # RLIMIT_FSIZE: the worker's output cap
            channel.send(FileTooLargeMessage(reason="a file grew past the output limit"))
        else:
            return _internal_error(exc, channel)
        return 2
    except Exception as exc:
        if isinstance(exc, RuntimeError) and "allocate" in str(exc):  # torch's allocator
            channel.send(RefusalMessage(reason=_OUT_OF_MEMORY))
            return 2
        return _internal_error(exc, channel)
    channel.send(ResultMessage(value=result))
    return 0


def _internal_error(exc: BaseException, channel: _Channel) -> int:
    """Details to stderr (the log) under an incident ID; only the ID goes to the user."""
    incident = new_incident()
    print(f"incident {incident}: the engine failed", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    channel.send(IncidentMessage(incident=incident, detail=f"{type(exc).__name__}: {exc}"))
    return 2


def exit_now(code: int) -> None:
    """End the process without Python's teardown: with torch loaded, unloading every module
    and freeing every object took seconds, during which the worker waited for the exit.
    The engine has nothing left to do: every file it wrote is closed, and its messages and
    log lines are flushed here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
