"""The `deadweight` command: serve, worker, prune, example.

This is the composition root: `worker`, `prune` and `example` import the worker and the
engine lazily, inside the command, so the API process never imports torch.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A user error: one line on stderr, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_bare_compensate(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.func(args) or 0)
    except BadInput as exc:
        print(f"deadweight: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


_COMPENSATIONS = ("none", "mean", "linear")


def _bare_compensate(argv: list[str]) -> list[str]:
    """`--compensate` alone was the first release's flag for mean folding, and may stand before
    the positional arguments: argparse would read the next one as its mode."""
    return [
        "--compensate=mean"
        if a == "--compensate" and (i + 1 == len(argv) or argv[i + 1] not in _COMPENSATIONS)
        else a
        for i, a in enumerate(argv)
    ]


def _parser() -> argparse.ArgumentParser:
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
    serve.set_defaults(func=_serve)

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
    worker.set_defaults(func=_worker)

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
    prune.add_argument("--eval-data", type=Path, help="evaluation data (default: DATA)")
    prune.add_argument("--label-column", help="label column of CSV data")
    prune.add_argument(
        "--criterion",
        choices=["reconstruction", "seed", "variance"],
        help="reconstruction: the error a removal leaves in the next layer after linear "
        "compensation (fractions only); seed: |mean| and std both small; variance: std "
        "alone (default: reconstruction, or the one absolute --thresholds are written for)",
    )
    prune.add_argument(
        "--thresholds",
        help="fractions (f0.2,f0.4), MEAN:STD pairs for seed (0.1:0.4,0.5:1) or STD values "
        "for variance (0.1,0.2); default: f0.1..f0.8",
    )
    prune.add_argument(
        "--compensate",
        nargs="?",
        const="mean",
        default="linear",
        choices=_COMPENSATIONS,
        help="what replaces removed neurons in the next layer: none, mean (their means "
        "folded into its bias; the bare flag) or linear (their least-squares reconstruction "
        "from the kept neurons; default)",
    )
    prune.add_argument(
        "--allocation",
        default="global",
        choices=["global", "uniform", "auto"],
        help="spread a fraction by one ranking across layers (global, default), as the "
        "same share of every layer (uniform), or, with --search, search with both and let "
        "the evaluation choose (auto, 12 evaluations)",
    )
    prune.add_argument(
        "--search",
        action="store_true",
        help="find the largest fraction within --max-metric-drop by bisection (6 "
        "evaluations) instead of a sweep; no --thresholds",
    )
    prune.add_argument(
        "--recover-epochs",
        type=int,
        metavar="N",
        help="fine-tune every candidate for N epochs on DATA (distillation from the original, "
        "plus cross-entropy with labels) after re-estimating its BatchNorm statistics (N=0: "
        "only that); without --eval-data, 20%% of DATA is held out",
    )
    prune.add_argument(
        "--recover-lr", type=float, default=1e-3, help="recovery's learning rate (default 1e-3)"
    )
    prune.add_argument(
        "--recover-max-seconds",
        type=float,
        help="stop each candidate's recovery after this many seconds",
    )
    prune.add_argument(
        "--seed", type=int, default=0, help="hold-out split and recovery seed (default 0)"
    )
    prune.add_argument(
        "--metric",
        choices=["accuracy", "agreement", "mse"],
        help="default: accuracy with labels, else agreement with the original",
    )
    prune.add_argument(
        "--max-metric-drop",
        type=float,
        default=0.005,
        help="largest acceptable metric drop for the recommendation (default 0.005)",
    )
    prune.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    prune.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    prune.add_argument(
        "--out",
        type=Path,
        default=Path("deadweight-out"),
        help="output folder (default ./deadweight-out)",
    )
    prune.set_defaults(func=_prune)

    example = sub.add_parser(
        "example",
        help="write a trained MLP and data to try the service",
        description="Write model.pt2 (an MLP trained on scikit-learn's "
        "digits), data.npz and eval.npz into --out.",
    )
    example.add_argument(
        "--out", type=Path, default=Path("example"), help="folder (default ./example)"
    )
    example.set_defaults(func=_example)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from jobs.settings import get_settings
    from service.auth import is_loopback
    from service.main import create_app
    from service.server import ensure_descriptors, serve

    try:
        settings = get_settings()
    except ValueError as exc:
        raise BadInput(f"invalid settings: {exc}") from exc
    if not settings.api_key_tenants() and not is_loopback(args.host):
        raise BadInput(
            f"refusing to serve on {args.host} without API keys: set DEADWEIGHT_API_KEYS "
            "(tenant=key pairs), or bind to 127.0.0.1"
        )
    try:
        # Checked before the worker starts, so a refusal leaves nothing behind.
        ensure_descriptors(settings.max_connections)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    settings.ensure_dirs()
    # Two embedded workers: inspections (seconds) never wait behind a job (hours).
    children = [] if args.no_worker else [_start_embedded_worker(q) for q in _EMBEDDED_QUEUES]
    try:
        serve(create_app(settings), args.host, args.port, settings)
    finally:
        for child in children:
            _stop(child)
    return 0


_EMBEDDED_QUEUES = ("jobs", "inspections")


def _start_embedded_worker(queues: str) -> subprocess.Popen[bytes]:
    """A worker as a child process; it receives SIGTERM if this process dies."""

    def die_with_parent() -> None:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    # The worker runs uploaded models: it gets no API keys (it never needs them).
    env = {k: v for k, v in os.environ.items() if k != "DEADWEIGHT_API_KEYS"}
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--queues", queues],
        env=env,
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _queues(text: str) -> list[str]:
    from jobs.queue import QUEUES

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected jobs, inspections or both (comma-separated), got {text!r}"
        )
    return names


def _node_name(queues: list[str]) -> str:
    # Celery's default name for a worker of every queue; the queue's name otherwise.
    return "celery" if len(queues) > 1 else queues[0]


def _worker(args: argparse.Namespace) -> int:
    from jobs.queue import QUEUES
    from worker.celery_app import app

    app.worker_main(
        [
            "worker",
            f"--queues={','.join(QUEUES[name] for name in args.queues)}",
            # Two workers on one host (the embedded pair) need names of their own.
            f"--hostname={_node_name(args.queues)}@%h",
            f"--loglevel={args.loglevel}",
            f"--concurrency={args.concurrency}",
            "--pool=prefork",
            # Mingle/gossip/heartbeat need broadcast exchanges; job state lives in the store.
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
    )
    return 0


def _prune(args: argparse.Namespace) -> int:
    from jobs.datasets import InvalidDataset
    from pruning.errors import PruningError
    from service.cli_prune import prune_locally

    try:
        table = prune_locally(args)
    except (PruningError, InvalidDataset, OSError) as exc:
        raise BadInput(str(exc)) from exc
    print(table)
    return 0


def _example(args: argparse.Namespace) -> int:
    from pruning.example import write_example

    for path in write_example(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
