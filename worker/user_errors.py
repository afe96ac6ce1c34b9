"""What a job's or an inspection's failure says to its user, and what goes to the log.

A user sees a stable message: a refusal keeps its reason with upload paths replaced by the
upload's name; anything unexpected is an incident ID. The details (tracebacks, the engine's
stderr, paths) go to the worker log under the same ID.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from worker.protocol import new_incident
from worker.sandbox import EngineCrashed, EngineInternalError

log = logging.getLogger("deadweight.worker")

_ADDRESS_RE = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def scrub(message: str, names: dict[str, str], data_dir: Path) -> str:
    """A message fit for a user: upload paths become the uploads' names, any other path in
    the data directory becomes `<data dir>/…`, and heap addresses are dropped."""
    for path, name in names.items():
        message = message.replace(path, name or "the upload")
    root = re.escape(str(data_dir))
    message = re.sub(root + r"[^\s'\"()\[\]{},;]*", "<data dir>/…", message)
    return _ADDRESS_RE.sub("0x…", message)


def incident_message(job_id: str, exc: BaseException) -> str:
    incident = new_incident()
    log.error("job %s: incident %s", job_id, incident, exc_info=exc)
    return (
        f"internal error in the worker (incident {incident}); the operator can find the "
        "details in the worker log"
    )


def log_failure(what: str, exc: BaseException) -> None:
    if isinstance(exc, EngineInternalError):
        log.error("%s: incident %s: %s", what, exc.incident, exc.detail)
    elif isinstance(exc, EngineCrashed):
        log.error(
            "%s: incident %s: the engine crashed with %s while %s (its stack, printed by "
            "faulthandler, is above in this log)",
            what, exc.incident, exc.signal_name, exc.activity,
        )  # fmt: skip
