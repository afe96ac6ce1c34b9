"""The standby engine's side (`python -m worker.engine_process --standby`): import what
every request needs while the worker waits, then take the orders (`worker.sandbox.standby`).

The orders come from the worker, not from a user: the limits and the working directory of
the request that follows them. They are applied before the request is read, so the engine
reads uploaded files under the same limits, in the same directory and with the same
environment as a fresh engine (`worker.sandbox.launch`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import IO

from worker.protocol import decode_orders
from worker.sandbox.launch import Limits, limiter


def preload() -> None:
    """Import what the requests need: torch, the engine, its plots and torch's export
    machinery (the reader's first read). Imports only: no tensor is made, no thread pool
    started, nothing is read."""
    import pruning.describe
    import pruning.report
    import pruning.sweep
    from pruning.reader import warm_up

    del pruning  # imported for their side effect: the modules are loaded
    warm_up()


def take_orders(stdin: IO[str]) -> bool:
    """Wait for the orders on `stdin`, then apply them: the limits on this process, the
    working directory, HOME and TMPDIR. False: the worker closed the pipe without orders."""
    line = stdin.readline()
    if not line:
        return False
    orders = decode_orders(line)
    limiter(Limits(orders.memory_bytes, orders.cpu_seconds, orders.file_bytes))()
    waited_in = os.getcwd()
    os.chdir(orders.workdir)
    os.environ["HOME"], os.environ["TMPDIR"] = orders.home, orders.tmpdir
    tempfile.tempdir = None  # found again from TMPDIR on next use
    # `python -m` put the directory it started in first on the path, as a fresh engine has
    # its working directory there.
    if sys.path and sys.path[0] == waited_in:
        sys.path[0] = orders.workdir
    shutil.rmtree(waited_in, ignore_errors=True)  # the folder it waited in is its own
    return True
