"""Running the engine on uploaded files in a child process of its own, with limits.

An uploaded model is a program: the safe reader refuses what could run code, but the graph
it lets through still runs, with sizes the uploader chose. So inspections and jobs run in a
child of the worker (`python -m worker.engine_process`) that

- has resource limits: address space (`DEADWEIGHT_JOB_MEMORY_BYTES`), CPU seconds (the
  job's time limit times the CPU count), the size of any file it writes
  (`DEADWEIGHT_JOB_OUTPUT_BYTES`), open files (1024), no core dumps, and optionally a
  wall-clock limit (inspections: `DEADWEIGHT_INSPECTION_TIME_LIMIT`);
- gets an environment built from an allowlist (`jobs.child_process`, shared with the
  upload validation child): no `DEADWEIGHT_*` setting, so neither the
  database URL nor the broker URL nor API keys, and HOME/TMPDIR in a working directory of
  its own, which is also its current directory and is removed afterwards;
- has no access to the job store: the parent reads its progress and its result from a pipe
  (`worker.protocol`), and decides what is recorded;
- dies with its parent (PR_SET_PDEATHSIG), and is killed when a watch of the parent's
  raises (a cancelled job, a lost lease, the output cap).

How it ended is typed (`SandboxFailure` and its subclasses), so the worker can tell the
user the right thing: a refusal of the input keeps the engine's message (`EngineRefused`);
an unexpected exception becomes an incident ID (`EngineInternalError`, details in the log);
a child killed by SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT crashed (`EngineCrashed`, named
as such); SIGKILL and SIGXCPU are the memory and CPU limits (`EngineKilled`).

What it does not stop: the child runs as the worker's user and can read what that user can
read (other uploads in the data directory). Run workers as their own user, in a container,
when tenants must not trust each other's models at all.

Each child serves one request. A worker process starts its next child before a request
comes (`standby`), so that torch is imported while the worker waits; that child puts the
request's limits on itself and moves into its directory before it reads the request.

Modules: `launch` (the child, its limits and environment), `standby` (the warm child of a
worker process), `run` (the request in, the message loop, the outcome out), `failures` (how
a run can end badly).
"""

from worker.sandbox.failures import (
    EngineCrashed,
    EngineDiskFull,
    EngineFileTooLarge,
    EngineInternalError,
    EngineKilled,
    EngineRefused,
    EngineTimedOut,
    SandboxFailure,
)
from worker.sandbox.launch import Limits, engine_env
from worker.sandbox.run import run_sandboxed

__all__ = [
    "EngineCrashed",
    "EngineDiskFull",
    "EngineFileTooLarge",
    "EngineInternalError",
    "EngineKilled",
    "EngineRefused",
    "EngineTimedOut",
    "Limits",
    "SandboxFailure",
    "engine_env",
    "run_sandboxed",
]
