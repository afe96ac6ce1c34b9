"""The engine's stderr relayed into the worker's log, when the worker logs JSON.

The engine writes its own lines as `LEVEL logger: message` (set up in
`worker.engine_process` when `ENGINE_LOG_ENV` is set), and libraries write what they like:
warnings, tracebacks, a native crash's stack. With JSON logs every line of the worker's
output must be a JSON object, so `launch` gives such an engine a stderr pipe and a thread of
the worker reads it and logs each line with the job's fields (`bind`): an engine line keeps
its level and logger, any other line is a WARNING of `deadweight.engine`. In text mode the
engine keeps the worker's stderr, as a terminal user expects.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from typing import IO

# Set in an engine's environment when its stderr is relayed: it then logs its own lines.
# Not a `DEADWEIGHT_*` name: the engine's environment holds none of the settings.
ENGINE_LOG_ENV = "DW_ENGINE_LOG"
ENGINE_LOGGER = "deadweight.engine"
ENGINE_LINE_FORMAT = "%(levelname)s %(name)s: %(message)s"
# A line longer than this is cut into pieces (a runaway write cannot take the worker's memory).
MAX_LINE_BYTES = 16384
_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([A-Za-z0-9_.]+): (.*)", re.DOTALL)


class _Relay(threading.Thread):
    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="engine-stderr", daemon=True)
        self.stream = stream
        self.fields: dict[str, object] = {}  # the job's, once the engine has a request

    def run(self) -> None:
        for raw in iter(lambda: self.stream.readline(MAX_LINE_BYTES), b""):
            relay_line(raw, self.fields)


def relay_line(raw: bytes, fields: dict[str, object]) -> None:
    """Log one line the engine wrote on stderr."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if not text.strip():
        return
    match = _LINE.fullmatch(text)
    if match is None:
        level, name, message = logging.WARNING, ENGINE_LOGGER, text
    else:
        level, name, message = logging.getLevelNamesMapping()[match[1]], match[2], match[3]
    logging.getLogger(name).log(level, "%s", message, extra=dict(fields))


_relays: dict[int, _Relay] = {}  # by the engine's pid


def relay(proc: subprocess.Popen[bytes]) -> None:
    """Start relaying `proc`'s stderr (a pipe) into this process's log."""
    assert proc.stderr is not None
    thread = _Relay(proc.stderr)
    _relays[proc.pid] = thread
    thread.start()


def bind(proc: subprocess.Popen[bytes], fields: dict[str, object]) -> None:
    """The fields the engine's later lines carry (job_id, tenant, attempt, stage)."""
    found = _relays.get(proc.pid)
    if found is not None:
        found.fields = dict(fields)


def finish(proc: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
    """After the engine exited: its last lines are logged before the outcome's."""
    found = _relays.pop(proc.pid, None)
    if found is not None:
        found.join(timeout)
