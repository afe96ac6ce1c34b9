"""The sandboxed engine's work done in the test process, for corpora of hostile files.

`deadweight prune` and the worker's inspection run the engine in a child process
(`worker.sandbox.run_sandboxed`), which imports torch and the engine anew for every file:
seconds each, minutes for a corpus. `run_in_this_process` stands in for `run_sandboxed`:
the request crosses the protocol's wire form and the engine's own request handler (what the
child runs) answers it, so every file still goes through the command or the worker and
through the engine, with only the process between them left out. A test that uses it runs
at least one file of its corpus through the real child as well, for what the process adds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jobs.datasets import DatasetFileError
from pruning.errors import PruningError
from worker.engine_process import _Channel, _handle
from worker.protocol import EngineRequest, decode_request, encode
from worker.sandbox import EngineRefused, Limits


def run_in_this_process(
    request: EngineRequest,
    workdir: Path,
    limits: Limits,
    on_progress: Callable[[str, float], None] | None = None,
    watches: Sequence[Callable[[], None]] = (),
) -> Any:
    """`run_sandboxed`'s result or refusal, from the engine's handler in this process.

    Raises:
        EngineRefused: the engine refused the request, as the child reports it (its
            `RefusalMessage`, with the same reason).
        AssertionError: the engine failed in any other way; the child would have reported
            an internal error, not a refusal.
    """
    received = decode_request(encode(request))  # what the child reads on its stdin
    try:
        return _handle(received, _Channel(io.StringIO()))
    except (PruningError, DatasetFileError) as exc:  # the engine's typed refusals
        raise EngineRefused(str(exc)) from exc
    except Exception as exc:
        raise AssertionError(f"the engine failed instead of refusing: {exc!r}") from exc
