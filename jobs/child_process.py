"""What every child process that handles an upload shares: its environment and its limits.

Two kinds of child read untrusted files: the validation child (`jobs.validation_launch`,
started by the API) and the engine's (`worker.sandbox`, started by a worker). Both get an
environment built from an allowlist, so no `DEADWEIGHT_*` setting (no database URL, broker
URL nor API key) reaches them, and both limit themselves the same way before they read
anything: address space, CPU time, open files, no core dumps, death with their parent.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from collections.abc import Iterable
from typing import Final

# Passed through to every child when set: what Python needs to start, nothing of the
# service's. Each kind of child may pass more (`child_env`'s `passed_through`).
ENV_ALLOWLIST: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "VIRTUAL_ENV", "LD_LIBRARY_PATH")


def child_env(passed_through: Iterable[str] = (), **values: str) -> dict[str, str]:
    """The allowlisted variables (and `passed_through`) that are set, then `values`."""
    names = (*ENV_ALLOWLIST, *passed_through)
    env = {k: os.environ[k] for k in names if k in os.environ}
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        # glibc reserves 64 MiB of address space per malloc arena, up to 8 per core: cap it
        # so that the address-space limit measures memory, not the core count.
        MALLOC_ARENA_MAX="2",
    )
    env.update(values)
    return env


def limit_process(
    *, memory_bytes: int, cpu_seconds: int, cpu_grace_seconds: int, open_files: int
) -> None:
    """Limit the calling process (the child, before it reads anything): address space
    (0: none), CPU time (SIGXCPU at `cpu_seconds`, SIGKILL `cpu_grace_seconds` later; 0:
    none), open files; no core dumps; on Linux it dies with its parent (PR_SET_PDEATHSIG).

    Safe between fork and exec (`preexec_fn`): it allocates nothing worth mentioning.
    """
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + cpu_grace_seconds))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    die_with_parent()


def die_with_parent() -> None:
    """On Linux, the calling process is killed when its parent dies (PR_SET_PDEATHSIG): a
    worker killed by a hard time limit or the OOM killer leaves no child working on. Safe
    between fork and exec."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
