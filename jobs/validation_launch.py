"""Launching the validation child: its request, its environment, its deadline, its output.

`run_child` starts `python -m jobs.validation_child '<request JSON>'` with an environment
built from an allowlist (`jobs.child_process`: no `DEADWEIGHT_*` setting), stdin
closed and `/` as its directory; the child limits its own memory, CPU time and open files
from the request before it reads the file (`jobs.validation_child`). The parent kills it when
the wall-time deadline passes, or when the request waiting for it is cancelled, and keeps at
most 64 KiB of each of its outputs. What the outcome means is `jobs.validation_outcome`'s
business.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from jobs.child_process import child_env
from jobs.validation_protocol import UploadKind, ValidationRequest

if TYPE_CHECKING:  # the child needs no settings (nor pydantic): the request carries them
    from jobs.settings import Settings

# A compressed .npz can decode to far more than its file size; validating it streams every
# byte, so the decoded arrays are capped at a multiple of the upload limit.
DECODED_BYTES_PER_UPLOAD_BYTE: Final = 8
# What one child may write back: a result line is a few hundred bytes, a traceback a few kB.
_OUTPUT_CAP: Final = 64 * 1024
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[1])


class ValidationUnavailable(RuntimeError):
    """The validation child could not be started: a server problem, not the file's."""


@dataclass(frozen=True)
class ChildRun:
    """How a child ended: its exit (None: killed at the deadline), output, wall time."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


def build_request(
    kind: UploadKind | str,
    path: Path,
    filename: str,
    label_column: str | None,
    settings: Settings,
) -> ValidationRequest:
    """The child's request: the file, and the server's limits it applies to itself."""
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


def validation_env() -> dict[str, str]:
    """The child's environment: the allowlist, so no setting, URL or key of the API leaks in.

    Unlike the engine's (`worker.sandbox.launch`), nothing of the operator's is passed
    through: the code is the parent's, and one thread each (the CPU limit then measures the
    validation, and BLAS thread buffers do not eat the address-space limit).
    """
    return child_env(
        PYTHONPATH=_PACKAGE_ROOT,  # the same code as the parent, installed or not
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )


def _command(request: ValidationRequest) -> list[str]:
    return [sys.executable, "-m", "jobs.validation_child", request.to_json()]


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    """Everything the child writes is drained (it must not block), the first `cap` kept."""
    kept = b""
    while stream is not None and (chunk := await stream.read(65536)):
        kept += chunk[: max(0, cap - len(kept))]
    return kept


async def run_child(request: ValidationRequest, timeout: float) -> ChildRun:
    """Run one child without blocking the event loop; killed at `timeout` or on cancellation.

    Raises:
        ValidationUnavailable: the child could not be started.
    """
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *_command(request),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=validation_env(),
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
    return ChildRun(proc.returncode, out, err, timed_out, time.monotonic() - start)
