"""Validating an upload in a child process with limits, never in the API process.

A dataset is validated by reading every value, and a model archive by parsing a zip
directory: work whose cost the uploader chooses. Done in the API process, one small hostile
file could take gigabytes or minutes from every tenant. So each validation runs in a child,
`python -m jobs.validation_child '<request JSON>'`, that

- limits itself before it touches the file: address space (`validation_memory_bytes`),
  CPU seconds (`validation_seconds`), open files, no core dumps; it dies with its parent;
- gets an environment built from an allowlist (no `DEADWEIGHT_*` setting, so no database
  URL nor API keys), stdin closed, `/` as its directory;
- is killed when `validation_seconds` of wall time pass;
- writes one JSON line on stdout (`ValidationResult`): the dataset's description, a refusal
  (a message for the user) or a crash. Its stderr is logged, never shown to users.

A child that dies (memory, time, a signal) becomes a typed refusal with a message that
names the limit: never a 500, never an internal path. At most `validation_concurrency`
children run at once per API process, tenants taking turns; `validate_upload` awaits its
child without holding a thread of the server's pool.

This module is the entry point (`validate_upload`) and the slots. The rest, in the order a
validation runs:

    jobs/validation_protocol.py   the request and the result line (typed, JSON)
    jobs/validation_launch.py     the child started with its environment and deadline
                                  (the allowlist and limits: `jobs/child_process.py`,
                                  shared with the engine's child)
    jobs/validation_child.py      the child: limits itself, validates, prints its result
    jobs/validation_outcome.py    the result, or the child's death, as an accepted file or a
                                  refusal (`DatasetFileError`, `InvalidArchive`)

The child imports NumPy and `jobs.datasets` only: no torch, no engine.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.fair_slots import FairSlots
from jobs.validation_launch import ValidationUnavailable, build_request, run_child
from jobs.validation_outcome import accepted_info, interpret_run
from jobs.validation_protocol import UploadKind, ValidationRequest, ValidationResult

if TYPE_CHECKING:
    from jobs.settings import Settings


class ValidationBusy(ValidationUnavailable):
    """No validation slot came free in time; the message is fit for the client."""


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FairSlots] = (
    weakref.WeakKeyDictionary()
)


def _fair_slots(limit: int) -> FairSlots:
    """One set of slots per event loop (futures belong to the loop that made them)."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = FairSlots(limit)
    slots.limit = limit
    return slots


async def run_validation(
    request: ValidationRequest, settings: Settings, tenant: str = ""
) -> ValidationResult:
    """Run one child, at most `validation_concurrency` at once, taking turns between
    tenants (`jobs.fair_slots`); its result, deaths included."""
    slots = _fair_slots(settings.validation_concurrency)
    # A bounded wait: an upload's hold on its blob must not outlive what the reaper allows
    # (`Settings.leftover_seconds`: one wait and one validation).
    try:
        await slots.acquire(tenant, timeout=settings.validation_seconds)
    except TimeoutError as exc:
        raise ValidationBusy(
            "the server is busy checking other uploads and this one waited "
            f"{settings.validation_seconds} s for its turn; nothing was stored, retry later"
        ) from exc
    try:
        run = await run_child(request, settings.validation_seconds)
    finally:
        slots.release(tenant)
    return interpret_run(request, run, settings)


async def validate_upload(
    kind: UploadKind | str,
    path: Path,
    filename: str,
    label_column: str | None,
    settings: Settings,
    tenant: str = "",
) -> dict[str, Any]:
    """Validate an upload in a limited child; the dataset's `DatasetInfo.as_dict()`, or {}.
    `tenant` takes its turn for a validation slot.

    Raises:
        DatasetFileError: (kind "dataset") the file is refused, or its validation ran out of
            memory or time: the message says which and what to do.
        InvalidArchive: (kind "model_archive") likewise.
        ValidationUnavailable: the child could not be started (a server problem).
    """
    request = build_request(kind, path, filename, label_column, settings)
    return accepted_info(request, await run_validation(request, settings, tenant))
