"""A warm engine per worker process: started while the worker waits, it serves one request.

Importing torch, the engine and torch's export machinery costs seconds, on every job and
every inspection. So a worker's pool process (`worker.celery_app`: one task per process)
starts its engine as soon as it starts (`prepare`): the engine imports while the worker
waits for a message. When a request comes, `hand_over` sends the engine its orders
(`worker.protocol.StandbyOrders`): the request's limits and working directory, which it puts
on itself before it reads the request (`worker.engine_standby`). What a fresh engine has, a
standby engine has too:

- one engine per request: a standby serves one request and exits, so nothing of one
  tenant's job is left in a process that runs another's;
- the same environment (`engine_env`'s allowlist; HOME and TMPDIR move to the request's
  working directory, which becomes its current directory);
- the same limits: open files, no core dumps, niceness and death with its parent from its
  start;
  address space, CPU time and file size from its orders, before it reads the request (its
  imports count against the CPU limit, as a fresh engine's do);
- the same parent, the worker process that follows it: its exit status, its death signal.

Without a standby (none prepared, or it died while it waited) `run_sandboxed` starts a fresh
engine, as it always did.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from worker.protocol import StandbyOrders, encode
from worker.sandbox.launch import Limits, engine_env, launch

log = logging.getLogger("deadweight.worker")

# The engine's argument that makes it wait for orders (`worker.engine_standby`).
STANDBY_ARG = "--standby"
# Names its folder under the worker's temporary directory, where the reaper's sweep of
# leftovers (`jobs.leftovers.sweep_tmp`) finds the folders of standbys that died unused.
STANDBY_PREFIX = ".engine-standby-"


@dataclass(frozen=True)
class _Standby:
    proc: subprocess.Popen[bytes]
    folder: Path  # its HOME and directory until it has orders (it removes it then)


_waiting: list[_Standby] = []  # this process's standby: none or one


def prepare(root: Path, nice: int = 0) -> None:
    """Start this process's standby engine, in a folder of its own under `root`, unless one
    is waiting already; `nice` is the requests' (`Limits.nice`), taken from its start, so
    that its imports already yield to the API and to a running job."""
    if _waiting and _waiting[0].proc.poll() is None:
        return
    discard()
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=STANDBY_PREFIX, dir=root))
    # No address-space, CPU or file-size limit yet: the orders bring the request's.
    _waiting.append(_Standby(launch(folder, Limits(0, 0, nice=nice), (STANDBY_ARG,)), folder))


def hand_over(workdir: Path, limits: Limits) -> subprocess.Popen[bytes] | None:
    """This process's standby engine, ordered to put `limits` on itself and move into
    `workdir`; it then reads its request on stdin as any engine does. None: no standby is
    waiting, or it died while it waited."""
    if not _waiting:
        return None
    standby = _waiting.pop()
    if standby.proc.poll() is not None:
        log.warning("the standby engine exited (%s) before its request", standby.proc.returncode)
        _end(standby)
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    env = engine_env(workdir)
    orders = StandbyOrders(
        workdir=str(workdir.resolve()),
        home=env["HOME"],
        tmpdir=env["TMPDIR"],
        memory_bytes=limits.memory_bytes,
        cpu_seconds=limits.cpu_seconds,
        file_bytes=limits.file_bytes,
    )
    assert standby.proc.stdin is not None
    try:
        standby.proc.stdin.write((encode(orders) + "\n").encode())
        standby.proc.stdin.flush()
    except OSError:  # it died between the check and the write
        _end(standby)
        return None
    return standby.proc


def discard() -> None:
    """End this process's standby engine, if one waits (its folder goes with it)."""
    while _waiting:
        _end(_waiting.pop())


def _end(standby: _Standby) -> None:
    if standby.proc.poll() is None:
        standby.proc.kill()
    standby.proc.wait()
    for pipe in (standby.proc.stdin, standby.proc.stdout):
        if pipe is not None:
            pipe.close()
    shutil.rmtree(standby.folder, ignore_errors=True)
