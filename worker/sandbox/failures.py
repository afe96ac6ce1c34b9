"""How a sandboxed run can end badly: one class per thing that happened.

A `SandboxFailure` (the base: any of them) has a message for the job's user. The engine
refused its input (`EngineRefused`, with the engine's reason), wrote past the disk or the file
size limit, failed unexpectedly (an incident), crashed in native code, or was killed at a
limit or ran past its wall-clock time.
"""

from __future__ import annotations

import signal

from worker.protocol import new_incident
from worker.sandbox.launch import Limits

# Signals that mean the engine itself crashed (a bug in native code), not a limit.
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
)


class SandboxFailure(Exception):
    """Any way a sandboxed run ended without a result (the subclasses below); the message is
    for the job's user."""


class EngineRefused(SandboxFailure):
    """The engine refused its input with a reason for the user: the engine's typed errors,
    a dataset file's, or out of memory within its limit (`RefusalMessage`)."""


class EngineInternalError(SandboxFailure):
    """An unexpected exception in the engine: the user gets the incident, the log the rest."""

    def __init__(self, incident: str, detail: str) -> None:
        super().__init__(
            f"internal error in the engine (incident {incident}); the operator can find "
            "the details in the worker log"
        )
        self.incident, self.detail = incident, detail


class EngineCrashed(SandboxFailure):
    """The engine died of a signal that means a crash in native code (SIGSEGV, ...)."""

    def __init__(self, signal_name: str, activity: str, incident: str) -> None:
        super().__init__(
            f"the engine crashed ({signal_name}) while {activity}: a fault in the engine or "
            f"in torch on this model, not a limit (incident {incident}; the operator can "
            "find the details in the worker log)"
        )
        self.signal_name, self.activity, self.incident = signal_name, activity, incident


class EngineKilled(SandboxFailure):
    """The engine was killed at a limit (memory, CPU time) or by someone else, or exited
    without a result (`signal_name` None)."""

    def __init__(self, message: str, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class EngineTimedOut(SandboxFailure):
    """The engine ran past its wall-clock limit (`Limits.wall_seconds`) and was killed."""


class EngineDiskFull(SandboxFailure):
    """The engine could not write: no space left on the device (or the quota reached)."""


class EngineFileTooLarge(SandboxFailure):
    """The engine could not write: a file passed `Limits.file_bytes`."""


def death(code: int, limits: Limits, activity: str) -> SandboxFailure:
    """What an exit without a result means: a crash, a limit, or an early exit."""
    if code < 0:
        sig = signal.Signals(-code)
        if sig in CRASH_SIGNALS:
            # The caller logs the incident (the CLI has no log, only one line to print).
            return EngineCrashed(sig.name, activity, new_incident())
        if sig == signal.SIGXCPU:
            return EngineKilled(
                f"the job used up its CPU time limit ({limits.cpu_seconds} CPU seconds)",
                sig.name,
            )
        return EngineKilled(
            f"the job's process was killed ({sig.name}); it may have exceeded its memory "
            f"({limits.memory_bytes / 1024**3:.1f} GiB) or CPU time limit",
            sig.name,
        )
    return EngineKilled(f"the job's process exited with status {code} without a result")
