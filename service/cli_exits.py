"""Exit statuses of the `deadweight` command that a pipeline branches on (README: Command
line). `prune` adds its own for an engine that died (`service.cli_prune`)."""

from __future__ import annotations

EXIT_JOB_FAILED = 1  # the job ended failed or cancelled (or a wait ran out)
EXIT_BAD_INPUT = 2  # bad flags, a missing file, or a 4xx from the service
EXIT_UNREACHABLE = 3  # no answer from the service, or 5xx after every retry
