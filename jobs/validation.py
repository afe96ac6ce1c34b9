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
children run at once per API process; `validate_upload` awaits its child without holding a
thread of the server's pool.

The child (`jobs.validation_child`) imports NumPy and `jobs.datasets` only: no torch, no
engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from jobs.archive_check import InvalidArchive
from jobs.datasets import InvalidDataset
from jobs.fair_slots import FairSlots
from jobs.validation_child import Outcome, UploadKind, ValidationRequest, ValidationResult

if TYPE_CHECKING:  # the child needs no settings (nor pydantic): the request carries them
    from jobs.settings import Settings

logger = logging.getLogger(__name__)

# A compressed .npz can decode to far more than its file size; validating it streams every
# byte, so the decoded arrays are capped at a multiple of the upload limit.
DECODED_BYTES_PER_UPLOAD_BYTE: Final = 8
# What one child may write back: a result line is a few hundred bytes, a traceback a few kB.
_OUTPUT_CAP: Final = 64 * 1024
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[1])
# Passed through when set: what Python needs to start, nothing of the service's.
_ENV_ALLOWLIST: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "VIRTUAL_ENV", "LD_LIBRARY_PATH")


class ValidationUnavailable(RuntimeError):
    """The validation child could not be started: a server problem, not the file's."""


class ValidationBusy(ValidationUnavailable):
    """No validation slot came free in time; the message is fit for the client."""


@dataclass(frozen=True)
class _ChildRun:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


# -- the parent --------------------------------------------------------------------------


def build_request(
    kind: UploadKind | str,
    path: Path,
    filename: str,
    label_column: str | None,
    settings: Settings,
) -> ValidationRequest:
    return ValidationRequest(
        kind=UploadKind(kind),
        path=str(path.resolve()),  # the child runs in /
        filename=filename,
        label_column=label_column,
        max_samples=settings.max_samples,
        max_features=settings.max_features,
        max_decoded_bytes=settings.max_upload_bytes * DECODED_BYTES_PER_UPLOAD_BYTE,
        memory_bytes=settings.validation_memory_bytes,
        cpu_seconds=settings.validation_seconds,
        parent_pid=os.getpid(),
    )


def child_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_ALLOWLIST if k in os.environ}
    env.update(
        PYTHONPATH=_PACKAGE_ROOT,  # the same code as the parent, installed or not
        PYTHONDONTWRITEBYTECODE="1",
        # One thread each: the CPU limit then measures the validation, and BLAS thread
        # buffers do not eat the address-space limit.
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        # glibc reserves 64 MiB of address space per malloc arena: cap the arenas so the
        # address-space limit measures memory.
        MALLOC_ARENA_MAX="2",
    )
    return env


def _command(request: ValidationRequest) -> list[str]:
    return [sys.executable, "-m", "jobs.validation_child", request.to_json()]


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    """Everything the child writes is drained (it must not block), the first `cap` kept."""
    kept = b""
    while stream is not None and (chunk := await stream.read(65536)):
        kept += chunk[: max(0, cap - len(kept))]
    return kept


async def _run_child(request: ValidationRequest, timeout: float) -> _ChildRun:
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *_command(request),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
            cwd="/",
        )
    except OSError as exc:
        raise ValidationUnavailable(f"cannot start the validation process: {exc}") from exc

    async def communicate() -> tuple[bytes, bytes]:
        out, err, _ = await asyncio.gather(
            _read_capped(proc.stdout, _OUTPUT_CAP),
            _read_capped(proc.stderr, _OUTPUT_CAP),
            proc.wait(),
        )
        return out, err

    try:
        out, err = await asyncio.wait_for(communicate(), timeout)
        timed_out = False
    except TimeoutError:
        out, err, timed_out = b"", b"", True
    finally:
        if proc.returncode is None:  # timed out, or the request was cancelled
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return _ChildRun(proc.returncode, out, err, timed_out, time.monotonic() - start)


def _run_child_sync(request: ValidationRequest, timeout: float) -> _ChildRun:
    start = time.monotonic()
    try:
        done = subprocess.run(
            _command(request),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=child_env(),
            cwd="/",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() has killed and reaped the child
        return _ChildRun(None, b"", b"", True, time.monotonic() - start)
    except OSError as exc:
        raise ValidationUnavailable(f"cannot start the validation process: {exc}") from exc
    return _ChildRun(
        done.returncode,
        done.stdout[:_OUTPUT_CAP],
        done.stderr[:_OUTPUT_CAP],
        False,
        time.monotonic() - start,
    )


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
        run = await _run_child(request, settings.validation_seconds)
    finally:
        slots.release(tenant)
    return _result(request, run, settings)


def run_validation_sync(request: ValidationRequest, settings: Settings) -> ValidationResult:
    """`run_validation` for the CLI and tests (no concurrency limit)."""
    return _result(request, _run_child_sync(request, settings.validation_seconds), settings)


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
        InvalidDataset: (kind "dataset") the file is refused, or its validation ran out of
            memory or time: the message says which and what to do.
        InvalidArchive: (kind "model_archive") likewise.
        ValidationUnavailable: the child could not be started (a server problem).
    """
    request = build_request(kind, path, filename, label_column, settings)
    return _accepted(request, await run_validation(request, settings, tenant))


def validate_upload_sync(
    kind: UploadKind | str,
    path: Path,
    filename: str,
    label_column: str | None,
    settings: Settings,
) -> dict[str, Any]:
    """`validate_upload` for synchronous callers (the CLI, tests)."""
    request = build_request(kind, path, filename, label_column, settings)
    return _accepted(request, run_validation_sync(request, settings))


def _accepted(request: ValidationRequest, result: ValidationResult) -> dict[str, Any]:
    if result.outcome is Outcome.OK and result.info is not None:
        return result.info
    message = result.message or f"{request.filename} could not be validated"
    if request.kind is UploadKind.MODEL_ARCHIVE:
        raise InvalidArchive(message)
    raise InvalidDataset(message)


def _result(request: ValidationRequest, run: _ChildRun, settings: Settings) -> ValidationResult:
    """The child's own result, or a refusal that says how it died."""
    result = _parse_line(run.stdout)
    name = request.filename
    if result is not None and result.outcome in (Outcome.OK, Outcome.REFUSED):
        return result
    if result is not None and result.outcome is Outcome.OUT_OF_MEMORY:
        return _refusal(_memory_message(name, settings))
    code = run.returncode
    if run.timed_out or code == -signal.SIGXCPU:
        return _refusal(
            f"validating {name} took longer than {settings.validation_seconds} s, the limit "
            "of this server (DEADWEIGHT_VALIDATION_SECONDS): upload a smaller file"
        )
    _log_failure(request, run)
    if code == -signal.SIGKILL or code == -signal.SIGABRT:  # the kernel, or Python, out of memory
        return _refusal(_memory_message(name, settings))
    if code is not None and code < 0:
        return _refusal(
            f"validating {name} stopped with {signal.Signals(-code).name}; check that it is a "
            "well-formed file (the incident is logged)"
        )
    return _refusal(
        f"{name} could not be validated: the validator failed on it (the incident is logged); "
        "check that it is a well-formed file"
    )


def _refusal(message: str) -> ValidationResult:
    return ValidationResult(Outcome.REFUSED, message=message)


def _memory_message(name: str, settings: Settings) -> str:
    limit = settings.validation_memory_bytes
    return (
        f"{name} needs more than {limit} bytes ({limit / 1024**3:.2f} GiB) of memory to "
        "validate, the limit of this server (DEADWEIGHT_VALIDATION_MEMORY_BYTES): upload a "
        "smaller file, or .safetensors, which validates in little memory"
    )


def _parse_line(stdout: bytes) -> ValidationResult | None:
    lines = stdout.strip().splitlines()
    if not lines:
        return None
    try:
        return ValidationResult.from_json(lines[-1].decode())
    except (ValueError, TypeError, KeyError):
        return None


def _log_failure(request: ValidationRequest, run: _ChildRun) -> None:
    logger.error(
        "validation of %s (%s, %s) failed: exit %s after %.1f s; stderr: %s",
        request.path,
        request.kind,
        request.filename,
        run.returncode,
        run.seconds,
        run.stderr.decode(errors="replace")[-4000:],
    )
