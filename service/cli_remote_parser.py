"""The flags of the commands that talk to a running service: `submit` and `jobs ...` (their
bodies: `service.cli_remote`). Standard library only, as `service.cli_parser`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from jobs.states import JobStatus

URL_HELP = "the service (default: $DEADWEIGHT_URL, else http://127.0.0.1:8000)"


def add_remote_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    job_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`submit` (with `job_options`, the flags it shares with `prune`) and `jobs`."""
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--url", help=URL_HELP)
    remote.add_argument(
        "--json", action="store_true", help="print JSON on stdout (progress stays on stderr)"
    )
    remote.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retries after a connection failure, 503 or 429, with backoff (default 5)",
    )

    submit = sub.add_parser(
        "submit",
        parents=[remote],
        help="submit a job to a running service (uploads the files first)",
        description="Upload MODEL and DATA (or use the IDs of earlier uploads) and submit a "
        "pruning job to the service at --url, authenticated with $DEADWEIGHT_API_KEY. "
        "Exit status: 0 submitted (with --wait: succeeded), 1 failed or cancelled, 2 bad "
        "input, 3 service unreachable.",
    )
    submit.add_argument("model", metavar="MODEL", help="a .pt2 file, or an uploaded model's ID")
    submit.add_argument(
        "data", metavar="DATA", help="calibration data (.npz, .safetensors, .csv), or an ID"
    )
    job_options(submit)
    submit.add_argument(
        "--no-labels",
        action="store_true",
        help="the CSV data has no label column (needed when a feature is named like one)",
    )
    submit.add_argument("--webhook-url", help="the service POSTs the job's end to this URL")
    submit.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        help="log the job as a run of this MLflow experiment (the service's "
        "DEADWEIGHT_MLFLOW_TRACKING_URI names the tracking server)",
    )
    submit.add_argument(
        "--mlflow-run-name",
        metavar="NAME",
        help="with --mlflow-experiment: the run's name (default: deadweight-<job id>)",
    )
    submit.add_argument("--wait", action="store_true", help="wait for the job's end")
    submit.add_argument(
        "--timeout", type=float, metavar="S", help="with --wait: give up waiting after S s"
    )
    submit.add_argument(
        "--download",
        type=Path,
        metavar="DIR",
        help="wait, then download results.json, results.csv and the recommended model into DIR",
    )

    jobs = sub.add_parser("jobs", help="list, follow and fetch the service's jobs")
    verbs = jobs.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", parents=[remote], help="the latest jobs, newest first")
    listing.add_argument("--status", choices=[s.value for s in JobStatus])
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    for verb, text in (
        ("show", "one job's record"),
        ("results", "a succeeded job's table"),
        ("cancel", "stop a queued or running job"),
    ):
        verbs.add_parser(verb, parents=[remote], help=text).add_argument("job_id", metavar="JOB")
    wait = verbs.add_parser(
        "wait",
        parents=[remote],
        help="wait for a job's end (exit 0 succeeded, 1 failed or cancelled)",
    )
    wait.add_argument("job_id", metavar="JOB")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    download = verbs.add_parser("download", parents=[remote], help="download a job's files")
    download.add_argument("job_id", metavar="JOB")
    download.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="published files (default: recommended, the recommended model)",
    )
    download.add_argument(
        "--out", type=Path, default=Path("."), help="folder (default: the current one)"
    )
