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
from pathlib import Path
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
    rehearse(Path.cwd())


def rehearse(folder: Path) -> None:
    """Read and analyse a small program of the engine's own making, as a request would:
    torch builds much of what a read needs on first use (fake-tensor dispatch, FX code
    generation), which made a first read twice as slow as the next. Torch's random state is
    restored afterwards, so a request sees the state a fresh engine has. Best effort: a
    failure here leaves that work to the request."""
    import torch
    from torch import nn

    from pruning.graph import analyse
    from pruning.reader import read_program

    path = folder / "rehearsal.pt2"
    try:
        with torch.random.fork_rng(devices=[]):
            model = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
            ).eval()  # fmt: skip
            batch = torch.export.Dim("batch", min=1)
            example = (torch.zeros(2, 3, 8, 8),)
            program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
            torch.export.save(program, path)
            analyse(read_program(path).module())
    except Exception as exc:  # the request does this work itself
        print(f"standby engine: rehearsal skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    finally:
        path.unlink(missing_ok=True)


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
