"""The `deadweight` command: serve, worker, prune, example, and the remote submit and jobs
(their flags: `service.cli_parser`; the remote ones' bodies: `service.cli_remote`).

This is the composition root: `worker`, `prune` and `example` import the worker and the
engine lazily, inside the command, so the API process never imports torch.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from service.cli_exits import EXIT_BAD_INPUT
from service.cli_parser import bare_compensate, build_parser


class BadInput(Exception):
    """A user error: one line on stderr, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(bare_compensate(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except BadInput as exc:
        print(f"deadweight: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from jobs.logging_setup import configure_logging
    from jobs.settings import get_settings
    from service.auth import is_loopback
    from service.main import create_app
    from service.server import ensure_descriptors, serve

    try:
        settings = get_settings()
    except ValueError as exc:
        raise BadInput(f"invalid settings: {exc}") from exc
    configure_logging(settings.log_format)
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


def _node_name(queues: list[str]) -> str:
    # Celery's default name for a worker of every queue; the queue's name otherwise.
    return "celery" if len(queues) > 1 else queues[0]


def _worker(args: argparse.Namespace) -> int:
    from jobs.logging_setup import configure_logging
    from jobs.queue import QUEUES
    from jobs.settings import get_settings
    from worker.celery_app import app

    log_format = get_settings().log_format
    # Before Celery starts: its first warnings come before its logging signal.
    configure_logging(log_format, args.loglevel.upper())
    # Celery's start-up banner is raw text, which has no place among JSON lines.
    quiet = ["--quiet"] if log_format == "json" else []
    app.worker_main(
        [
            *quiet,  # an option of `celery` itself, before the subcommand
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
    from jobs.datasets import DatasetFileError
    from pruning.errors import PruningError
    from service.cli_prune import prune_locally

    try:
        table = prune_locally(args)
    except (PruningError, DatasetFileError, OSError) as exc:
        raise BadInput(str(exc)) from exc
    print(table)
    return 0


def _example(args: argparse.Namespace) -> int:
    from pruning.example import write_example

    for path in write_example(args.out):
        print(path)
    return 0


def _remote(args: argparse.Namespace) -> int:
    # Imported here: the client (httpx) is no concern of `serve`'s or `worker`'s.
    from service.cli_remote import run_remote

    return run_remote(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "worker": _worker,
    "prune": _prune,
    "example": _example,
    "submit": _remote,
    "jobs": _remote,
}


if __name__ == "__main__":
    sys.exit(main())
