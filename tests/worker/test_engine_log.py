"""The engine's stderr in the worker's JSON log (worker.sandbox.engine_log)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from tests.log_capture import captured_json_log
from worker.sandbox.engine_log import relay_line


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with captured_json_log() as stream:
        yield stream


def test_engine_lines_keep_their_level_and_logger_and_others_become_warnings(
    json_log: io.StringIO,
) -> None:
    fields: dict[str, object] = {"job_id": "j1", "tenant": "acme", "attempt": 1, "stage": "x"}
    relay_line(b"INFO deadweight.engine: JobRequest received\n", fields)
    relay_line(b'Traceback (most recent call last): "quoted" \xff\n', fields)
    relay_line(b"\n", fields)  # blank lines are dropped
    own, raw = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert (own["level"], own["logger"], own["msg"]) == (
        "INFO",
        "deadweight.engine",
        "JobRequest received",
    )
    assert (raw["level"], raw["logger"]) == ("WARNING", "deadweight.engine")
    assert raw["msg"].startswith("Traceback") and raw["msg"].endswith("\ufffd")
    assert all(line["job_id"] == "j1" and line["stage"] == "x" for line in (own, raw))
