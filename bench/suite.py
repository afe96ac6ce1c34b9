"""`make bench`: every figure issue 12 asks for, ending with one Markdown table.

For the MLP, resnet18 and the transformer of `bench.common`: the statistics pass against
the bare forward (`bench.stats_pass`); whole `deadweight prune` against its forwards, against
a hand-written Torch-Pruning script, and the same job through the HTTP service against the
CLI (`bench.job_ratios`, one round of all four at a time); peak RSS of a job at 1x and 8x
the samples (`bench.job_memory`). Then upload throughput and the API's peak RSS
(`bench.upload_rate`) and, when `bench/api_load.py` exists, its figures (run as its own
process; its lines are copied into the output). Every ratio is the median of per-round
ratios of things run alternately, with its range and number of pairs.

    .venv/bin/python -m bench.suite [--quick] [--models mlp,resnet18,transformer]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import job_memory, job_ratios, stats_pass, upload_rate
from bench.common import MIB, REPO, SPECS, machine, prepare, spread
from bench.service_run import service


@dataclass(frozen=True)
class Plan:
    stats_rounds: int
    job_rounds: dict[str, int]
    upload_rounds: int
    memory_models: tuple[str, ...]


QUICK = Plan(3, {"mlp": 1, "resnet18": 1, "transformer": 1}, 1, ("mlp",))
FULL = Plan(7, {"mlp": 5, "resnet18": 3, "transformer": 5}, 3, ("mlp", "transformer", "resnet18"))


@dataclass
class Table:
    """Rows of the final table: a label, then one cell per model."""

    models: list[str]
    rows: dict[str, dict[str, str]] = field(default_factory=dict)

    def put(self, row: str, model: str, cell: str) -> None:
        self.rows.setdefault(row, {})[model] = cell

    def markdown(self) -> list[str]:
        heads = [SPECS[m].title for m in self.models]
        lines = ["| ratio | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for label, cells in self.rows.items():
            lines.append(
                f"| {label} | " + " | ".join(cells.get(m, "–") for m in self.models) + " |"
            )
        return lines


STATS = "statistics pass / bare `inference_mode` forward over the same batches"
WHOLE = "whole `deadweight prune` (5 fractions) / (statistics forward + candidate forwards)"
TP = "`deadweight prune` / a hand-written Torch-Pruning script doing the same job"
HTTP = "the same job through the HTTP service / `deadweight prune`"
WORKER = "the job in a warm worker (`started_at` → `finished_at`) / its forwards"
RSS = "peak RSS of a `deadweight prune` job, 8× / 1× the samples"


def _jobs(table: Table, plan: Plan, folder: Path) -> None:
    with service(folder / "service") as svc:
        for name in table.models:
            print(f"{name}: job ratios ({plan.job_rounds[name]} rounds) ...", flush=True)
            prepared = prepare(SPECS[name], folder / name)
            found = job_ratios.measure(
                prepared, folder / f"{name}-runs", svc.url, plan.job_rounds[name]
            )
            table.put(WHOLE, name, f"{spread(found.forwards)}, {found.candidates} candidates")
            table.put(TP, name, spread(found.torch_pruning))
            table.put(HTTP, name, spread(found.http))
            table.put(WORKER, name, spread(found.in_worker))


def _api_load(quick: bool) -> list[str]:
    """`python -m bench.api_load`'s output (another benchmark's), when it exists."""
    if not (REPO / "bench" / "api_load.py").is_file():
        return ["bench/api_load.py does not exist yet: no API load figures"]
    command = [sys.executable, "-m", "bench.api_load", *(["--quick"] if quick else [])]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    lines = done.stdout.rstrip().splitlines()
    if done.returncode != 0:
        lines += [f"bench.api_load exited with status {done.returncode}:"]
        lines += done.stderr.rstrip().splitlines()[-10:]
    for line in lines:
        print(f"  {line}", flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one round of each job, fewer pairs")
    parser.add_argument("--models", default="mlp,resnet18,transformer")
    parser.add_argument("--no-api-load", action="store_true", help="skip bench.api_load")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(SPECS)
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    start = time.monotonic()
    table = Table(models)
    for name in models:
        print(f"{name}: statistics pass ({plan.stats_rounds} pairs) ...", flush=True)
        found = spread(stats_pass.measure(SPECS[name], plan.stats_rounds))
        print(f"  {name} statistics pass / bare forward: {found}", flush=True)
        table.put(STATS, name, found)
    with tempfile.TemporaryDirectory(prefix="dw-bench-") as tmp:
        _jobs(table, plan, Path(tmp))
    for name in (m for m in plan.memory_models if m in models):
        print(f"{name}: peak RSS at 1x and 8x the samples ...", flush=True)
        memory = job_memory.measure(name)
        print(f"  {memory.line()}", flush=True)
        cell = f"{memory.ratio:.2f}x ({memory.peak_1x / MIB:.0f} → {memory.peak_8x / MIB:.0f} MiB)"
        table.put(RSS, name, cell)
    print(f"uploads ({plan.upload_rounds} rounds) ...", flush=True)
    uploads = upload_rate.lines(upload_rate.measure(plan.upload_rounds))
    api_lines = [] if args.no_api_load else _api_load(args.quick)
    minutes = (time.monotonic() - start) / 60
    run = "quick run (--quick)" if args.quick else "full run"
    print()
    print(f"Machine: {machine()}; {run}, {minutes:.0f} min.")
    print("Each cell: median (min-max, n pairs) of per-round ratios of alternated runs.")
    print()
    print("\n".join(table.markdown()))
    print()
    print("\n".join(f"- {line}" for line in uploads))
    if api_lines:
        print()
        print("`python -m bench.api_load`" + (" --quick" if args.quick else "") + ":")
        print("```")
        print("\n".join(api_lines))
        print("```")


if __name__ == "__main__":
    main()
