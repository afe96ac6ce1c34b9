"""One log format for the API, the worker (Celery's own loggers included) and the engine's
stderr (relayed by `worker.sandbox.engine_log`): `DEADWEIGHT_LOG_FORMAT=text|json`.

A JSON line is an object with `ts` (UTC, ISO 8601), `level`, `logger`, `msg`, then whichever
of `job_id`, `tenant`, `attempt`, `stage`, `request_id` are known where the line was logged,
and `exc` (the traceback) for an exception. The fields come from a context variable that the
request middleware and the worker's job bind (`log_fields`), or from a call's `extra`.

Credentials never reach a line: `Bearer <...>` and `whsec_...` are masked in every message,
a safety net behind the rule that no code logs keys, headers, secrets or file contents.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

LOG_FORMATS = ("text", "json")
# The context fields of the schema, in the order a line shows them.
CONTEXT_FIELDS = ("job_id", "tenant", "attempt", "stage", "request_id")
# An immutable default: each binding makes a new mapping, none is ever changed in place.
_fields: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "deadweight_log_fields", default=MappingProxyType({})
)
_SECRETS = re.compile(r"(?i)(bearer\s+)\S+|whsec_[A-Za-z0-9+/=]+")
_json_active = False  # this process (and its forks) writes JSON lines


@contextmanager
def log_fields(**fields: object) -> Iterator[None]:
    """Every line logged inside the block (in this context) carries `fields`."""
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def set_log_field(name: str, value: object) -> None:
    """Add a field to the current context until the enclosing `log_fields` block ends."""
    _fields.set({**_fields.get(), name: value})


def current_fields() -> dict[str, object]:
    return dict(_fields.get())


def json_active() -> bool:
    """Whether `configure_logging` chose JSON in this process (engines then relay stderr)."""
    return _json_active


def mask_secrets(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m.group(1)}[masked]" if m.group(1) else "[masked]", text)


class ContextFilter(logging.Filter):
    """Copies the bound context fields onto each record (a call's `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _context(record: logging.LogRecord) -> dict[str, object]:
    found = {name: getattr(record, name, None) for name in CONTEXT_FIELDS}
    return {name: value for name, value in found.items() if value is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_secrets(record.getMessage()),
            **_context(record),
        }
        if record.exc_info:
            line["exc"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = mask_secrets(super().format(record))
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        if not context:
            return text
        head, sep, rest = text.partition("\n")  # the fields end the first line, not a traceback
        return f"{head} [{context}]{sep}{rest}"


def configure_logging(
    log_format: str, level: int | str = logging.INFO, stream: IO[str] | None = None
) -> None:
    """One handler on the root logger, in `log_format`; every library's logger reaches it.

    `stream` defaults to the process's original stderr: Celery replaces `sys.stderr` with a
    proxy that logs, which must not log into itself.
    """
    global _json_active
    _json_active = log_format == "json"
    handler = logging.StreamHandler(stream or sys.__stderr__)
    handler.setFormatter(JsonFormatter() if _json_active else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a line of the log, not raw text
    # uvicorn configures nothing when handed log_config=None; its loggers then reach root.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
