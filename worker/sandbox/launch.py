"""Starting the engine's child process: its resource limits, environment and directory."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OPEN_FILES = 1024
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


def launch(workdir: Path, limits: Limits) -> subprocess.Popen[bytes]:
    """`python -m worker.engine_process` in `workdir`, with `limits`; stdin and stdout are
    pipes (the protocol), stderr is the worker's (its log)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "worker.engine_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=workdir,
        env=child_env(workdir),
        preexec_fn=_limit_child(limits),
    )


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
