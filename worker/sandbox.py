"""Running the engine on uploaded files in a child process of its own, with limits.

An uploaded model is a program: the safe reader refuses what could run code, but the graph
it lets through still runs, with sizes the uploader chose. So inspections and jobs run in a
child of the worker (`python -m worker.engine_process`) that

- has resource limits: address space (`DEADWEIGHT_JOB_MEMORY_BYTES`), CPU seconds (the
  job's time limit times the CPU count), open files (1024), no core dumps;
- gets an environment built from an allowlist: no `DEADWEIGHT_*` setting, so neither the
  database URL nor the broker URL nor API keys, and HOME/TMPDIR in a working directory of
  its own, which is also its current directory and is removed afterwards;
- has no access to the job store: the parent reads its progress and its result from a pipe,
  and decides what is recorded;
- dies with its parent (PR_SET_PDEATHSIG), and is killed when the job is cancelled.

What it does not stop: the child runs as the worker's user and can read what that user can
read (other uploads in the data directory). Run workers as their own user, in a container,
when tenants must not trust each other's models at all.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning.errors import Cancelled

OPEN_FILES = 1024
POLL_S = 0.25
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
)


class SandboxFailure(Exception):
    """The child refused its input or died; the message is for the job's user."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int  # address space; 0: none
    cpu_seconds: int  # 0: none

    @staticmethod
    def for_job(memory_bytes: int, wall_seconds: int) -> Limits:
        """CPU time accrues on every core at once: the wall-clock limit times the cores."""
        return Limits(memory_bytes, wall_seconds * max(1, os.cpu_count() or 1))


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
) -> Any:
    """Run one engine request in a limited child; returns its result.

    Raises:
        SandboxFailure: the child refused the input (the reason) or died (how).
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
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        outcome = _follow(proc, on_progress, should_cancel)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # cancelled, or the worker's own time limit struck
            proc.kill()
            proc.wait()
    if "error" in outcome:
        raise SandboxFailure(str(outcome["error"]))
    if code != 0 or "result" not in outcome:
        raise SandboxFailure(_death(code, limits))
    return outcome["result"]


def _follow(
    proc: subprocess.Popen[bytes],
    on_progress: Callable[[str, float], None] | None,
    should_cancel: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Read the child's messages until it closes its end; kill it on cancellation."""
    assert proc.stdout is not None
    outcome: dict[str, Any] = {}
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if should_cancel is not None and should_cancel():
                proc.kill()
                raise Cancelled("cancelled by the client")
            if not selector.select(POLL_S):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return outcome
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "progress" in message and on_progress is not None:
                    stage, fraction = message["progress"]
                    on_progress(str(stage), float(fraction))
                else:
                    outcome.update(message)


def _death(code: int, limits: Limits) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        if -code == signal.SIGXCPU:
            return f"the job used up its CPU time limit ({limits.cpu_seconds} CPU seconds)"
        return (
            f"the job's process was killed ({name}); it may have exceeded its memory "
            f"({limits.memory_bytes / 1024**3:.1f} GiB) or CPU time limit"
        )
    return f"the job's process exited with status {code} without a result"
