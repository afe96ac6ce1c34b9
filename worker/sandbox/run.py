"""One engine request in a limited child: the request in, the message loop, the outcome out."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jobs.logging_setup import current_fields
from worker.protocol import (
    DiskFullMessage,
    EngineRequest,
    FileTooLargeMessage,
    FinalMessage,
    IncidentMessage,
    InspectRequest,
    ProgressMessage,
    RefusalMessage,
    ResultMessage,
    decode_message,
    encode,
)
from worker.sandbox import engine_log
from worker.sandbox.failures import (
    EngineDiskFull,
    EngineFileTooLarge,
    EngineInternalError,
    EngineRefused,
    EngineTimedOut,
    SandboxFailure,
    death,
)
from worker.sandbox.launch import Limits, launch
from worker.sandbox.standby import hand_over

POLL_S = 0.25
# What the engine was doing at each progress stage, for a crash's message.
_ACTIVITY = {
    "loading": "loading the model and data",
    "statistics": "computing statistics",
    "baseline": "evaluating the original model",
    "ranking": "ranking the neurons",
    "candidates": "making the candidates",
    "publishing": "writing the results",
}


def run_sandboxed(
    request: EngineRequest,
    workdir: Path,
    limits: Limits,
    on_progress: Callable[[str, float], None] | None = None,
    watches: Sequence[Callable[[], None]] = (),
) -> Any:
    """Run one engine request in a limited child; returns its result.

    `watches` are called in turn about four times a second while the child runs; an
    exception one raises kills the child and propagates (the worker's lease, cancellation,
    disk and output checks).

    Raises:
        SandboxFailure: the child refused the input (`EngineRefused`, the reason) or died
            (how); see the subclasses.
    """
    # This process's warm engine when one waits (`worker.sandbox.standby`), else a fresh one.
    proc = hand_over(workdir, limits) or launch(workdir, limits)
    engine_log.bind(proc, current_fields())
    follower = _Follower(proc, limits, on_progress, watches)
    try:
        assert proc.stdin is not None
        proc.stdin.write(encode(request).encode())
        proc.stdin.close()
        final = follower.follow()
        code = proc.wait()
    finally:
        if proc.poll() is None:  # a watch raised, timed out, or the worker's time limit struck
            proc.kill()
            proc.wait()
        engine_log.finish(proc)
    if isinstance(final, ResultMessage) and code == 0:
        return final.value
    if final is not None and not isinstance(final, ResultMessage):
        raise _refusal(final)
    before = "inspecting the model" if isinstance(request, InspectRequest) else "starting"
    activity = _ACTIVITY.get(follower.stage or "", follower.stage or before)
    raise death(code, limits, activity)


def _refusal(
    message: RefusalMessage | DiskFullMessage | FileTooLargeMessage | IncidentMessage,
) -> SandboxFailure:
    match message:
        case IncidentMessage():
            return EngineInternalError(message.incident, message.detail)
        case DiskFullMessage():
            return EngineDiskFull(message.reason)
        case FileTooLargeMessage():
            return EngineFileTooLarge(message.reason)
        case RefusalMessage():
            return EngineRefused(message.reason)


class _Follower:
    """Reads the child's messages until it closes its end; kills it on its wall-clock
    limit or when a watch raises."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        limits: Limits,
        on_progress: Callable[[str, float], None] | None,
        watches: Sequence[Callable[[], None]],
    ) -> None:
        self.proc, self.limits = proc, limits
        self.on_progress, self.watches = on_progress, watches
        self.stage: str | None = None  # the last stage the child reported

    def follow(self) -> FinalMessage | None:
        """The child's final message (None: it sent none)."""
        proc = self.proc
        assert proc.stdout is not None
        final: FinalMessage | None = None
        buffer = b""
        started = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                self._checks(started)
                if not selector.select(POLL_S):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    return final
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = decode_message(line)
                    if isinstance(message, ProgressMessage):
                        self._progress(message)
                    else:
                        final = message

    def _progress(self, message: ProgressMessage) -> None:
        self.stage = message.stage
        if self.on_progress is not None:
            self.on_progress(message.stage, float(message.fraction))
            engine_log.bind(self.proc, current_fields())  # the stage the job is in now

    def _checks(self, started: float) -> None:
        for watch in self.watches:
            watch()  # an exception here kills the child (run_sandboxed's finally)
        wall = self.limits.wall_seconds
        if wall > 0 and time.monotonic() - started > wall:
            self.proc.kill()
            raise EngineTimedOut(f"the engine ran longer than {wall:g} s")
