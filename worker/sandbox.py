"""Running the engine on uploaded files in a child process of its own, with limits.

An uploaded model is a program: the safe reader refuses what could run code, but the graph
it lets through still runs, with sizes the uploader chose. So inspections and jobs run in a
child of the worker (`python -m worker.engine_process`) that

- has resource limits: address space (`DEADWEIGHT_JOB_MEMORY_BYTES`), CPU seconds (the
  job's time limit times the CPU count), the size of any file it writes
  (`DEADWEIGHT_JOB_OUTPUT_BYTES`), open files (1024), no core dumps, and optionally a
  wall-clock limit (inspections: `DEADWEIGHT_INSPECTION_TIME_LIMIT`);
- gets an environment built from an allowlist: no `DEADWEIGHT_*` setting, so neither the
  database URL nor the broker URL nor API keys, and HOME/TMPDIR in a working directory of
  its own, which is also its current directory and is removed afterwards;
- has no access to the job store: the parent reads its progress and its result from a pipe,
  and decides what is recorded;
- dies with its parent (PR_SET_PDEATHSIG), and is killed when the job is cancelled.

How it ended is typed (`SandboxFailure` and its subclasses), so the worker can tell the
user the right thing: a refusal of the input keeps the engine's message; an unexpected
exception becomes an incident ID (`EngineInternalError`, details in the log); a child killed
by SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT crashed (`EngineCrashed`, named as such);
SIGKILL and SIGXCPU are the memory and CPU limits (`EngineKilled`).

What it does not stop: the child runs as the worker's user and can read what that user can
read (other uploads in the data directory). Run workers as their own user, in a container,
when tenants must not trust each other's models at all.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning.errors import Cancelled

OPEN_FILES = 1024
POLL_S = 0.25
# Signals that mean the engine itself crashed (a bug in native code), not a limit.
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
)
# What the engine was doing at each progress stage, for a crash's message.
_ACTIVITY = {
    "loading": "loading the model and data",
    "statistics": "computing statistics",
    "baseline": "evaluating the original model",
    "ranking": "ranking the neurons",
    "candidates": "making the candidates",
    "publishing": "writing the results",
}
# Passed through when set: what Python, BLAS/OpenMP and CUDA need, nothing of the service's.
_ENV_ALLOWLIST = (
    "PATH",
    "LANG",
    "LC_ALL",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    # Test-only: makes the engine crash at a given stage (`worker.engine_process`).
    "DW_TEST_ENGINE_CRASH",
)


def new_incident() -> str:
    """An ID that ties a user's error message to the details in the log."""
    return secrets.token_hex(6)


class SandboxFailure(Exception):
    """The child refused its input or died; the message is for the job's user."""


class EngineInternalError(SandboxFailure):
    """An unexpected exception in the engine: the user gets the incident, the log the rest."""

    def __init__(self, incident: str, detail: str) -> None:
        super().__init__(
            f"internal error in the engine (incident {incident}); the operator can find "
            "the details in the worker log"
        )
        self.incident, self.detail = incident, detail


class EngineCrashed(SandboxFailure):
    """The engine died of a signal that means a crash in native code (SIGSEGV, ...)."""

    def __init__(self, signal_name: str, activity: str, incident: str) -> None:
        super().__init__(
            f"the engine crashed ({signal_name}) while {activity}: a fault in the engine or "
            f"in torch on this model, not a limit (incident {incident}; the operator can "
            "find the details in the worker log)"
        )
        self.signal_name, self.activity, self.incident = signal_name, activity, incident


class EngineKilled(SandboxFailure):
    """The engine was killed at a limit (memory, CPU time) or by someone else, or exited
    without a result (`signal_name` None)."""

    def __init__(self, message: str, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class EngineTimedOut(SandboxFailure):
    """The engine ran past its wall-clock limit (`Limits.wall_seconds`) and was killed."""


class EngineDiskFull(SandboxFailure):
    """The engine could not write: no space left on the device (or the quota reached)."""


class EngineFileTooLarge(SandboxFailure):
    """The engine could not write: a file passed `Limits.file_bytes`."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int  # address space; 0: none
    cpu_seconds: int  # 0: none
    file_bytes: int = 0  # the largest file the child may write; 0: none
    wall_seconds: float = 0  # killed after this long; 0: none

    @staticmethod
    def for_job(memory_bytes: int, wall_seconds: int, file_bytes: int = 0) -> Limits:
        """CPU time accrues on every core at once: the wall-clock limit times the cores."""
        return Limits(memory_bytes, wall_seconds * max(1, os.cpu_count() or 1), file_bytes)


def child_env(workdir: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_ALLOWLIST if k in os.environ}
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env.update(
        HOME=str(workdir),
        TMPDIR=str(tmp),
        PYTHONDONTWRITEBYTECODE="1",
        # glibc reserves 64 MiB of address space per malloc arena, up to 8 per core: cap it
        # so that the address-space limit measures memory, not the core count.
        MALLOC_ARENA_MAX="2",
    )
    return env


def _address_space_limit_applies() -> bool:
    # The CUDA driver reserves address space far beyond what it uses; an RLIMIT_AS would
    # make every CUDA job fail. On GPU machines the memory limit is left to the container.
    return not Path("/dev/nvidiactl").exists()


def _limit_child(limits: Limits) -> Callable[[], None]:
    apply_memory = limits.memory_bytes > 0 and _address_space_limit_applies()

    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        if apply_memory:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if limits.cpu_seconds > 0:
            # SIGXCPU at the soft limit, SIGKILL a minute later.
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 60))
        if limits.file_bytes > 0:
            # A write past it fails with EFBIG instead of killing the child (SIGXFSZ).
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return preexec


def run_sandboxed(
    request: dict[str, Any],
    workdir: Path,
    limits: Limits,
    on_progress: Callable[[str, float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    watch: Callable[[], None] | None = None,
) -> Any:
    """Run one engine request in a limited child; returns its result.

    `watch` is called about four times a second while the child runs; an exception it
    raises kills the child and propagates (the worker's checks on disk and output size).

    Raises:
        SandboxFailure: the child refused the input (the reason) or died (how); see the
            subclasses.
        Cancelled: `should_cancel` said so; the child has been killed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.engine_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=workdir,
        env=child_env(workdir),
        preexec_fn=_limit_child(limits),
    )
    follower = _Follower(proc, limits, on_progress, should_cancel, watch)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        outcome = follower.follow()
        code = proc.wait()
    finally:
        if proc.poll() is None:  # cancelled, timed out, or the worker's own time limit struck
            proc.kill()
            proc.wait()
    if "incident" in outcome:
        raise EngineInternalError(str(outcome["incident"]), str(outcome.get("detail", "")))
    if "error" in outcome:
        if outcome.get("disk_full"):
            raise EngineDiskFull(str(outcome["error"]))
        if outcome.get("too_large"):
            raise EngineFileTooLarge(str(outcome["error"]))
        raise SandboxFailure(str(outcome["error"]))
    if code != 0 or "result" not in outcome:
        before = "inspecting the model" if request.get("kind") == "inspect" else "starting"
        activity = _ACTIVITY.get(follower.stage or "", follower.stage or before)
        raise _death(code, limits, activity)
    return outcome["result"]


class _Follower:
    """Reads the child's messages until it closes its end; kills it on cancellation, on its
    wall-clock limit, or when the watch raises."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        limits: Limits,
        on_progress: Callable[[str, float], None] | None,
        should_cancel: Callable[[], bool] | None,
        watch: Callable[[], None] | None,
    ) -> None:
        self.proc, self.limits = proc, limits
        self.on_progress, self.should_cancel, self.watch = on_progress, should_cancel, watch
        self.stage: str | None = None  # the last stage the child reported

    def follow(self) -> dict[str, Any]:
        proc = self.proc
        assert proc.stdout is not None
        outcome: dict[str, Any] = {}
        buffer = b""
        started = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                self._checks(started)
                if not selector.select(POLL_S):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    return outcome
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "progress" in message:
                        stage, fraction = message["progress"]
                        self.stage = str(stage)
                        if self.on_progress is not None:
                            self.on_progress(str(stage), float(fraction))
                    else:
                        outcome.update(message)

    def _checks(self, started: float) -> None:
        if self.should_cancel is not None and self.should_cancel():
            self.proc.kill()
            raise Cancelled("cancelled by the client")
        wall = self.limits.wall_seconds
        if wall > 0 and time.monotonic() - started > wall:
            self.proc.kill()
            raise EngineTimedOut(f"the engine ran longer than {wall:g} s")
        if self.watch is not None:
            self.watch()  # an exception here kills the child (run_sandboxed's finally)


def _death(code: int, limits: Limits, activity: str) -> SandboxFailure:
    if code < 0:
        sig = signal.Signals(-code)
        if sig in CRASH_SIGNALS:
            # The caller logs the incident (the CLI has no log, only one line to print).
            return EngineCrashed(sig.name, activity, new_incident())
        if sig == signal.SIGXCPU:
            return EngineKilled(
                f"the job used up its CPU time limit ({limits.cpu_seconds} CPU seconds)",
                sig.name,
            )
        return EngineKilled(
            f"the job's process was killed ({sig.name}); it may have exceeded its memory "
            f"({limits.memory_bytes / 1024**3:.1f} GiB) or CPU time limit",
            sig.name,
        )
    return EngineKilled(f"the job's process exited with status {code} without a result")
