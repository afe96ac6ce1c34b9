"""The `deadweight` command's flags: one sub-parser per command (their bodies are in
`service.cli`). Imports only the standard library and the job's vocabulary, so `--help` is
fast and the API process never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.job_config import (
    DEFAULT_ALLOCATION,
    DEFAULT_BATCH_SIZE,
    DEFAULT_COMPENSATION,
    DEFAULT_MAX_METRIC_DROP,
    Allocation,
    Compensation,
    Criterion,
    Format,
    Metric,
    RecoverySpec,
)
from service.cli_remote_parser import add_remote_commands

_COMPENSATIONS = tuple(c.value for c in Compensation)


def bare_compensate(argv: list[str]) -> list[str]:
    """`--compensate` alone was the first release's flag for mean folding, and may stand before
    the positional arguments: argparse would read the next one as its mode."""
    return [
        "--compensate=mean"
        if a == "--compensate" and (i + 1 == len(argv) or argv[i + 1] not in _COMPENSATIONS)
        else a
        for i, a in enumerate(argv)
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deadweight",
        description="Find and remove the neurons of a trained network that carry no signal.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the API (and an embedded worker)",
        description="Run the HTTP API. Without settings: SQLite, a filesystem "
        "broker and local files under DEADWEIGHT_DATA_DIR, and a worker "
        "started as a child process. Clients authenticate with a key from "
        "DEADWEIGHT_API_KEYS (tenant=key pairs); without keys the API is open, "
        "which is allowed on a loopback address only.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any other needs DEADWEIGHT_API_KEYS)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--no-worker", action="store_true", help="run the API alone")

    worker = sub.add_parser(
        "worker",
        help="run a Celery worker only (scaled mode)",
        description="Run a worker that takes jobs from DEADWEIGHT_BROKER_URL. Each job "
        "and model inspection runs in a sandboxed child process; the worker's main "
        "process also reaps jobs whose worker was lost (DEADWEIGHT_LEASE_SECONDS).",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="jobs run at once in this worker (default 1; each uses all cores)",
    )
    worker.add_argument(
        "--queues",
        type=_queues,
        default=["jobs", "inspections"],
        help="what this worker takes, comma-separated: jobs, inspections (default both). "
        "A worker of its own for inspections keeps them from waiting behind long jobs",
    )
    worker.add_argument("--loglevel", default="INFO", help="log level (default INFO)")

    prune = sub.add_parser(
        "prune",
        help="run a pruning job locally, without a server",
        description="Prune MODEL.pt2 with DATA locally and write the files a "
        "service job publishes into --out.",
    )
    prune.add_argument("model", type=Path, metavar="MODEL.pt2", help="a torch.export program")
    prune.add_argument(
        "data", type=Path, metavar="DATA", help="calibration data (.npz, .safetensors, .csv)"
    )
    add_job_options(prune)
    prune.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"batch size (default {DEFAULT_BATCH_SIZE})",
    )
    prune.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    prune.add_argument(
        "--no-latency",
        action="store_true",
        help="do not time the models (no latency_ms figures; --max-latency-ms then refused)",
    )
    prune.add_argument(
        "--out",
        type=Path,
        default=Path("deadweight-out"),
        help="output folder (default ./deadweight-out)",
    )

    example = sub.add_parser(
        "example",
        help="write a trained MLP and data to try the service",
        description="Write model.pt2 (an MLP trained on scikit-learn's "
        "digits), data.npz and eval.npz into --out.",
    )
    example.add_argument(
        "--out", type=Path, default=Path("example"), help="folder (default ./example)"
    )
    add_remote_commands(sub, add_job_options)
    return parser


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The job's settings, shared by `prune` (run here) and `submit` (run by a service)."""
    parser.add_argument("--eval-data", type=Path, help="evaluation data (default: DATA)")
    parser.add_argument("--label-column", help="label column of CSV data")
    parser.add_argument(
        "--criterion",
        choices=[c.value for c in Criterion],
        help="reconstruction: the error a removal leaves in the next layer after linear "
        "compensation (fractions only); seed: |mean| and std both small; variance: std "
        "alone (default: reconstruction, or the one absolute --thresholds are written for)",
    )
    parser.add_argument(
        "--thresholds",
        help="fractions (f0.2,f0.4), MEAN:STD pairs for seed (0.1:0.4,0.5:1) or STD values "
        "for variance (0.1,0.2); default: f0.1..f0.8",
    )
    parser.add_argument(
        "--compensate",
        nargs="?",
        const=Compensation.MEAN.value,
        default=DEFAULT_COMPENSATION.value,
        choices=_COMPENSATIONS,
        help="what replaces removed neurons in the next layer: none, mean (their means "
        "folded into its bias; the bare flag) or linear (their least-squares reconstruction "
        "from the kept neurons; default)",
    )
    parser.add_argument(
        "--allocation",
        default=DEFAULT_ALLOCATION.value,
        choices=[a.value for a in Allocation],
        help="spread a fraction by one ranking across layers (global, default), as the "
        "same share of every layer (uniform), or, with --search, search with both and let "
        "the evaluation choose (auto, 12 evaluations)",
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="find the largest fraction within --max-metric-drop by bisection (6 "
        "evaluations) instead of a sweep; no --thresholds",
    )
    parser.add_argument(
        "--recover-epochs",
        type=int,
        metavar="N",
        help="fine-tune every candidate for N epochs on DATA (distillation from the original, "
        "plus cross-entropy with labels) after re-estimating its BatchNorm statistics (N=0: "
        "only that); without --eval-data, 20%% of DATA is held out",
    )
    parser.add_argument(
        "--recover-lr",
        type=float,
        default=RecoverySpec.lr,
        help="recovery's learning rate (default %(default)g)",
    )
    parser.add_argument(
        "--recover-max-seconds",
        type=float,
        help="stop each candidate's recovery after this many seconds",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="hold-out split and recovery seed (default 0)"
    )
    parser.add_argument(
        "--metric",
        choices=[m.value for m in Metric],
        help="default: accuracy with labels, else agreement with the original",
    )
    parser.add_argument(
        "--max-metric-drop",
        type=float,
        default=DEFAULT_MAX_METRIC_DROP,
        help="largest acceptable metric drop for the recommendation (default %(default)g)",
    )
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        help="a second budget for the recommendation: the smallest candidate within "
        "--max-metric-drop whose measured batch-1 median latency is at most this many ms",
    )
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=[f.value for f in Format],
        help="also write each candidate in this format (repeatable; pt2 always): onnx writes "
        "pruned-<k>.onnx (and baseline.onnx of the original), checked with onnx.checker and "
        "against the .pt2 with ONNX Runtime (needs the onnx extra where the engine runs)",
    )


def _queues(text: str) -> list[str]:
    from jobs.queue import QUEUES

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected jobs, inspections or both (comma-separated), got {text!r}"
        )
    return names
