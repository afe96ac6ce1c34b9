"""Peak RSS of a `deadweight prune` job at 1x and 8x the samples (issue 12: within 10 %).

Each job runs under a small wrapper process that starts `deadweight prune` and, once it has
ended, reads its own `getrusage(RUSAGE_CHILDREN).ru_maxrss`: on Linux that is the largest
peak RSS of any process below it that has been waited for, so it is the engine's sandboxed
child (the biggest process of a job), not the sum of the CLI and the engine. A fresh wrapper
per job keeps the figures apart.

    .venv/bin/python -m bench.job_memory [mlp transformer resnet18]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import MIB, SPECS, prepare
from bench.job_ratios import cli_command

_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    "sys.exit(code)\n"
)
SCALE = 8


@dataclass(frozen=True)
class JobMemory:
    model: str
    samples: int
    peak_1x: int  # bytes
    peak_8x: int

    @property
    def ratio(self) -> float:
        return self.peak_8x / self.peak_1x

    def line(self) -> str:
        return (
            f"{self.model:12s} peak RSS of a job: {self.peak_1x / MIB:.0f} MiB at "
            f"{self.samples:,} samples, {self.peak_8x / MIB:.0f} MiB at "
            f"{SCALE * self.samples:,} ({self.ratio:.2f}x)"
        )


def peak_rss(command: list[str]) -> int:
    """The largest peak RSS among the processes `command` started (itself included)."""
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed:\n{done.stderr[-3000:]}")
    return int(done.stdout.strip().splitlines()[-1])


def measure(name: str) -> JobMemory:
    spec = SPECS[name]
    peaks = []
    with tempfile.TemporaryDirectory(prefix=f"dw-job-memory-{name}-") as tmp:
        for scale in (1, SCALE):
            folder = Path(tmp) / f"{scale}x"
            prepared = prepare(spec, folder, samples=scale * spec.samples)
            peaks.append(peak_rss(cli_command(prepared, folder / "out")))
    return JobMemory(name, spec.samples, peaks[0], peaks[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("models", nargs="*", choices=sorted(SPECS), default=["mlp"])
    args = parser.parse_args()
    for name in args.models:
        print(measure(name).line())


if __name__ == "__main__":
    main()
