"""The validation child: limits itself, validates one upload, prints one JSON line.

Started by `jobs.validation_launch` as `python -m jobs.validation_child '<request JSON>'`;
the request and result types are in `jobs.validation_protocol`. Imports NumPy and
`jobs.datasets` only: no torch, no engine, no settings.
"""

from __future__ import annotations

import os
import resource
import sys
import traceback
from pathlib import Path
from typing import Any, Final

from jobs.archive_check import InvalidArchive, check_export_archive
from jobs.child_process import limit_process
from jobs.datasets import DatasetFileError, open_dataset
from jobs.validation_protocol import Outcome, UploadKind, ValidationRequest, ValidationResult

# One file and the Python runtime: far fewer than the engine's torch needs (1024).
VALIDATION_OPEN_FILES: Final = 64


def _limit_self(request: ValidationRequest) -> None:
    """Applied by the child to itself, first thing: `preexec_fn` is unsafe in a threaded
    parent (the API), and nothing of the file has been read yet."""
    limit_process(
        memory_bytes=request.memory_bytes,
        cpu_seconds=request.cpu_seconds,
        cpu_grace_seconds=5,
        open_files=VALIDATION_OPEN_FILES,
    )
    if os.getppid() != request.parent_pid:  # the parent died before prctl took effect
        sys.exit(1)


def _validate(request: ValidationRequest) -> dict[str, Any]:
    path = Path(request.path)
    if request.kind is UploadKind.MODEL_ARCHIVE:
        check_export_archive(path)
        return {}
    with open_dataset(
        path,
        label_column=request.label_column,
        max_samples=request.max_samples,
        name=request.filename,
        max_bytes=request.max_decoded_bytes,
        max_features=request.max_features,
    ) as dataset:
        dataset.validate()  # batches of a few MB, whatever the width of a sample
        return dataset.info.as_dict()


def _peak_rss_bytes() -> int:
    """This process image's peak resident memory. Not ru_maxrss: that keeps the parent's
    peak across fork (or vfork) and exec, so it would measure the API, not this child."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_main(argv: list[str]) -> int:
    """The child: validate the file the request names, print one `ValidationResult` line."""
    request = ValidationRequest.from_json(argv[0])
    _limit_self(request)
    try:
        result = ValidationResult(Outcome.OK, info=_validate(request))
    except (DatasetFileError, InvalidArchive) as exc:
        result = ValidationResult(Outcome.REFUSED, message=str(exc))
    except MemoryError:
        result = ValidationResult(Outcome.OUT_OF_MEMORY)
    except Exception:  # a bug met on this file: the parent logs stderr
        traceback.print_exc()
        result = ValidationResult(Outcome.CRASHED)
    result = ValidationResult(
        result.outcome, result.info, result.message, peak_rss_bytes=_peak_rss_bytes()
    )
    sys.stdout.write(result.to_json() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
