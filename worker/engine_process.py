"""The engine's side of the sandbox (`python -m worker.engine_process`).

Reads one request (JSON) on stdin, runs it, and writes JSON lines on its stdout:
`{"progress": [stage, fraction]}` while it works, then `{"result": ...}` or
`{"error": "..."}`. Anything else printed to stdout by libraries goes to stderr instead,
so the protocol stays clean. Requests:

- `{"kind": "inspect", "model": path, "max_parameters": n}` -> the model's description
  (`pruning.describe`);
- `{"kind": "job", "model": path, "data": dataset, "eval_data": dataset | null,
  "config": stored job config, "batch_size": n, "device": d, "max_parameters": n,
  "out_dir": path}` -> null,
  the files written into out_dir; a dataset is `{"path", "format", "label_column", "name"}`;
- `{"kind": "prune", ...}`: a `job` for `deadweight prune`; a dataset's `format` may be
  null (guessed from the file), and the result is the printed table;
- any request may say `"stack_on_crash": false` (default true: faulthandler prints the
  Python stack of a native crash on stderr);
- `{"kind": "describe"}` -> this process's environment names, directory and limits, so
  that the sandbox itself can be checked.

Failures: a typed refusal sends `{"error": reason}` (plus `"disk_full": true` when no space
was left, `"too_large": true` when a file passed the sandbox's file size limit); any other
exception sends `{"incident": id, "detail": "Type: message"}` and prints the traceback under
that ID on stderr (the worker's log), so no internal text, path or address reaches a user.
A native crash prints its Python stack (faulthandler) there too.
"""

from __future__ import annotations

import errno
import faulthandler
import json
import os
import resource
import secrets
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from jobs.datasets import DatasetFormat, InvalidDataset, open_dataset
from jobs.disk_space import is_disk_full
from pruning.config_json import config_from_json
from pruning.errors import PruningError

PROGRESS_EVERY_S = 0.2
# Test-only hook: the engine crashes (SIGSEGV) on reaching this stage ("start": at once).
_TEST_CRASH = "DW_TEST_ENGINE_CRASH"
_OUT_OF_MEMORY = (
    "the job ran out of memory within its limit (DEADWEIGHT_JOB_MEMORY_BYTES); "
    "a smaller batch size (DEADWEIGHT_BATCH_SIZE) needs less"
)


class _Channel:
    """The protocol's end: one JSON object per line, progress throttled."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last = ("", 0.0)

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def progress(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != self._last[0] or now - self._last[1] >= PROGRESS_EVERY_S or fraction >= 1:
            new_stage = stage != self._last[0]
            self.send({"progress": [stage, fraction]})
            self._last = (stage, now)
            if new_stage:
                _crash_if_asked(stage)


def _crash_if_asked(stage: str) -> None:
    if os.environ.get(_TEST_CRASH) == stage:
        import ctypes

        ctypes.string_at(0)  # reads address 0: a real SIGSEGV, as a native fault raises


def _run_job(request: dict[str, Any], channel: _Channel) -> Any:
    from pruning.sweep import DataInput, run

    with ExitStack() as stack:

        def data_input(spec: dict[str, Any]) -> DataInput:
            fmt = spec.get("format")
            ds = stack.enter_context(
                open_dataset(
                    Path(spec["path"]),
                    DatasetFormat(fmt) if fmt else None,
                    label_column=spec.get("label_column"),
                    name=spec.get("name"),
                )
            )
            return DataInput(source=ds, samples=ds.info.samples, has_labels=ds.info.has_labels)

        return run(
            Path(request["model"]),
            data_input(request["data"]),
            data_input(request["eval_data"]) if request.get("eval_data") else None,
            config_from_json(
                request["config"],
                int(request["batch_size"]),
                str(request["device"]),
                request.get("max_parameters"),
            ),
            Path(request["out_dir"]),
            progress=channel.progress,
        )


def _describe() -> dict[str, Any]:
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_CORE")
    }
    return {"env": sorted(os.environ), "cwd": os.getcwd(), "limits": limits}


def _handle(request: dict[str, Any], channel: _Channel) -> Any:
    kind = request.get("kind")
    if kind == "inspect":
        from pruning.describe import describe_model

        return describe_model(Path(request["model"]), request.get("max_parameters"))
    if kind == "job":
        _run_job(request, channel)
        return None
    if kind == "prune":
        from pruning.report import files as report

        return report.format_table(_run_job(request, channel))
    if kind == "describe":
        return _describe()
    raise ValueError(f"unknown request kind {kind!r}")


def main() -> int:
    # The protocol gets the real stdout; everything else printed goes to stderr.
    channel = _Channel(os.fdopen(os.dup(1), "w"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        request = json.loads(sys.stdin.read())
        if request.get("stack_on_crash", True):
            # A native crash prints the Python stack to stderr (the worker's log) first.
            faulthandler.enable()
        _crash_if_asked("start")
        result = _handle(request, channel)
    except (PruningError, InvalidDataset) as exc:
        channel.send({"error": str(exc)})
        return 2
    except MemoryError:
        channel.send({"error": _OUT_OF_MEMORY})
        return 2
    except OSError as exc:
        if is_disk_full(exc):
            channel.send({"error": "no space left on the device", "disk_full": True})
        elif exc.errno == errno.EFBIG:  # RLIMIT_FSIZE: the worker's output cap
            channel.send({"error": "a file grew past the output limit", "too_large": True})
        else:
            return _internal_error(exc, channel)
        return 2
    except Exception as exc:
        if isinstance(exc, RuntimeError) and "allocate" in str(exc):  # torch's allocator
            channel.send({"error": _OUT_OF_MEMORY})
            return 2
        return _internal_error(exc, channel)
    channel.send({"result": result})
    return 0


def _internal_error(exc: BaseException, channel: _Channel) -> int:
    """Details to stderr (the log) under an incident ID; only the ID goes to the user."""
    incident = secrets.token_hex(6)
    print(f"incident {incident}: the engine failed", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    channel.send({"incident": incident, "detail": f"{type(exc).__name__}: {exc}"})
    return 2


if __name__ == "__main__":
    sys.exit(main())
