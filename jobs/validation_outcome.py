"""What a validation child's run means for the upload: its own result, or how it died.

A child that answers is taken at its word: the dataset's description, or a refusal with a
message for the user. A child that dies (out of memory, out of time, a signal, a crash)
becomes a refusal whose message names the limit and the setting behind it: never a 500, never
an internal path. The details (exit, stderr) go to the log only.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any

from jobs.archive_check import InvalidArchive
from jobs.datasets import DatasetFileError
from jobs.validation_launch import ChildRun
from jobs.validation_protocol import Outcome, UploadKind, ValidationRequest, ValidationResult

if TYPE_CHECKING:
    from jobs.settings import Settings

logger = logging.getLogger(__name__)


def interpret_run(
    request: ValidationRequest, run: ChildRun, settings: Settings
) -> ValidationResult:
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


def _log_failure(request: ValidationRequest, run: ChildRun) -> None:
    logger.error(
        "validation of %s (%s, %s) failed: exit %s after %.1f s; stderr: %s",
        request.path,
        request.kind,
        request.filename,
        run.returncode,
        run.seconds,
        run.stderr.decode(errors="replace")[-4000:],
    )


def accepted_info(request: ValidationRequest, result: ValidationResult) -> dict[str, Any]:
    """The accepted file's description, or its refusal raised as the error of its kind.

    Raises:
        DatasetFileError: a refused dataset.
        InvalidArchive: a refused model archive.
    """
    if result.outcome is Outcome.OK and result.info is not None:
        return result.info
    message = result.message or f"{request.filename} could not be validated"
    if request.kind is UploadKind.MODEL_ARCHIVE:
        raise InvalidArchive(message)
    raise DatasetFileError(message)
