"""The process's logging switched to JSON into a buffer, for tests of log lines."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from jobs.logging_setup import configure_logging


@contextlib.contextmanager
def captured_json_log() -> Iterator[io.StringIO]:
    """JSON lines into the buffer yielded; the root logger is put back as it was after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging("text")  # resets the module's JSON flag
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
