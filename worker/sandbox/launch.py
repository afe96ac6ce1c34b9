"""Starting the engine's child process: its resource limits, environment and directory.

A worker process keeps one engine warm (`worker.sandbox.standby`): started while the worker
waits, it has imported torch and the engine when a request comes, and puts the request's
limits on itself before it reads it. Each engine serves one request, warm or not.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.child_process import child_env, limit_process
from jobs.logging_setup import json_active
from worker.sandbox import engine_log

# torch and its libraries open many files (shared libraries, shared memory): far more than
# the validation child's 64.
ENGINE_OPEN_FILES = 1024
# Passed through when set, beyond what every child gets (`jobs.child_process`): unlike the
# validation child, the engine runs the operator's installation on the operator's hardware,
# so it takes their Python path, BLAS/OpenMP thread counts and GPU selection.
_ENGINE_PASSED_THROUGH = (
    "PYTHONPATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    # Test-only: makes the engine crash at a given stage (`worker.engine_process`).
    "DW_TEST_ENGINE_CRASH",
)


@dataclass(frozen=True)
class Limits:
    memory_bytes: int  # address space; 0: none
    cpu_seconds: int  # 0: none
    file_bytes: int = 0  # the largest file the child may write; 0: none
    wall_seconds: float = 0  # killed after this long; 0: none
    nice: int = 0  # added to the child's niceness at its start (a priority, not a limit)

    @staticmethod
    def for_job(memory_bytes: int, wall_seconds: int, file_bytes: int = 0, nice: int = 0) -> Limits:
        """CPU time accrues on every core at once: the wall-clock limit times the cores."""
        cpu_seconds = wall_seconds * max(1, os.cpu_count() or 1)
        return Limits(memory_bytes, cpu_seconds, file_bytes, nice=nice)


def launch(workdir: Path, limits: Limits, args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """`python -m worker.engine_process` in `workdir`, limited before it runs a line of
    Python; stdin and stdout are pipes (the protocol), stderr is the worker's (its log),
    relayed line by line when the worker logs JSON (`worker.sandbox.engine_log`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    relayed = json_active()
    env = engine_env(workdir)
    if relayed:
        env[engine_log.ENGINE_LOG_ENV] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.engine_process", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if relayed else None,
        cwd=workdir,
        env=env,
        preexec_fn=limiter(limits),
    )
    if relayed:
        engine_log.relay(proc)
    return proc


def engine_env(workdir: Path) -> dict[str, str]:
    """The engine's environment: the allowlist, and HOME and TMPDIR in its `workdir`."""
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    return child_env(_ENGINE_PASSED_THROUGH, HOME=str(workdir), TMPDIR=str(tmp))


def _address_space_limit_applies() -> bool:
    # The CUDA driver reserves address space far beyond what it uses; an RLIMIT_AS would
    # make every CUDA job fail. On GPU machines the memory limit is left to the container.
    return not Path("/dev/nvidiactl").exists()


def limiter(limits: Limits) -> Callable[[], None]:
    """What puts `limits` on the calling process: a fresh engine's `preexec_fn`, or a
    standby engine's first step once it has its orders."""
    apply_memory = limits.memory_bytes > 0 and _address_space_limit_applies()

    def preexec() -> None:  # may run between fork and exec: no allocation-heavy work
        if limits.nice > 0:
            os.nice(limits.nice)
        if limits.file_bytes > 0:
            # A write past it fails with EFBIG instead of killing the child (SIGXFSZ).
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit_process(
            memory_bytes=limits.memory_bytes if apply_memory else 0,
            cpu_seconds=limits.cpu_seconds,
            cpu_grace_seconds=60,  # SIGKILL a minute after SIGXCPU
            open_files=ENGINE_OPEN_FILES,
        )

    return preexec
