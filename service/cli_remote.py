"""`deadweight submit` and `deadweight jobs ...`: the service's jobs from a shell or a
pipeline, through `deadweight_client` (flags: `service.cli_remote_parser`).

Exit statuses (`service.cli_exits`): 0 done (with a wait: succeeded), 1 failed or cancelled,
2 bad input (flags, files, any 4xx), 3 the service unreachable or failing (5xx). Results go
to stdout (JSON with `--json`); progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deadweight_client import (
    RECOMMENDED,
    ApiError,
    Client,
    DeadweightError,
    Job,
    JobFailed,
    RetryPolicy,
    ServerError,
    ServiceUnreachable,
)

from service.cli_exits import EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_UNREACHABLE
from service.cli_show import ProgressBar, job_line, results_table
from service.cli_submit import job_options, resolve_upload

# What `submit --download DIR` fetches besides the recommended model.
RESULT_FILES = ("results.json", "results.csv")


def run_remote(args: argparse.Namespace) -> int:
    """Run `submit` or a `jobs` verb; every failure becomes one line on stderr and a status."""
    command = _submit if args.command == "submit" else _VERBS[args.verb]
    client = Client(args.url, retry=RetryPolicy(retries=max(args.retries, 0)))
    try:
        with client:
            return command(client, args)
    except ServiceUnreachable as exc:
        where = client.connection.url
        return _fail(f"{exc.message}; is the service running at {where}?", EXIT_UNREACHABLE)
    except ServerError as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except ApiError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except (ValueError, OSError) as exc:  # bad thresholds, a missing or unwritable file
        return _fail(str(exc), EXIT_BAD_INPUT)
    except DeadweightError as exc:  # a wait that ran out, no recommendation
        return _fail(exc.message, EXIT_JOB_FAILED)


def _submit(client: Client, args: argparse.Namespace) -> int:
    model = resolve_upload(client, "model", args.model, args)
    data = resolve_upload(client, "dataset", args.data, args)
    eval_data = (
        resolve_upload(client, "dataset", str(args.eval_data), args) if args.eval_data else None
    )
    job = client.submit(model, data, eval_dataset=eval_data, **job_options(args))
    if not args.json:
        print(f"submitted job {job.id}", file=sys.stderr)
    if not (args.wait or args.download):
        return _print_job(job, args)
    status = _wait(job, args)
    downloaded = _download_results(job, args.download) if args.download and job.succeeded else []
    _print_job(job, args, downloaded)
    return status


def _wait(job: Job, args: argparse.Namespace) -> int:
    job.wait(timeout=args.timeout, on_progress=ProgressBar())
    try:
        job.raise_for_status()
    except JobFailed as exc:
        print(f"deadweight: job {job.id} {job.status}: {exc.message}", file=sys.stderr)
        return EXIT_JOB_FAILED
    return 0


def _download_results(job: Job, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(job.download(name, folder)) for name in RESULT_FILES]
    if job.results().get("recommended") is None:
        print(
            f"deadweight: job {job.id} recommends no candidate within its max_metric_drop; "
            f"pick one from {folder / 'results.csv'} (deadweight jobs download {job.id} NAME)",
            file=sys.stderr,
        )
    else:
        paths.append(str(job.download(RECOMMENDED, folder)))
    return paths


def _print_job(job: Job, args: argparse.Namespace, downloaded: list[str] | None = None) -> int:
    if args.json:
        record: dict[str, Any] = dict(job.record)
        if downloaded is not None:
            record["downloaded"] = downloaded
        _print_json(record)
    else:
        print(job_line(job))
        for path in downloaded or []:
            print(path)
    return 0


def _list(client: Client, args: argparse.Namespace) -> int:
    jobs = client.list_jobs(args.status, limit=args.limit)
    if args.json:
        _print_json([job.record for job in jobs])
    else:
        for job in jobs:
            print(job_line(job))
    return 0


def _show(client: Client, args: argparse.Namespace) -> int:
    return _print_job(client.job(args.job_id), args)


def _wait_verb(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.job_id)
    status = _wait(job, args)
    _print_job(job, args)
    return status


def _results(client: Client, args: argparse.Namespace) -> int:
    results = client.job(args.job_id).results()
    if args.json:
        _print_json(results)
    else:
        print(results_table(results))
    return 0


def _download(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.job_id)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [str(job.download(name, args.out)) for name in args.names or [RECOMMENDED]]
    if args.json:
        _print_json(paths)
    else:
        print("\n".join(paths))
    return 0


def _cancel(client: Client, args: argparse.Namespace) -> int:
    return _print_job(client.job(args.job_id).cancel(), args)


_VERBS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "list": _list,
    "show": _show,
    "wait": _wait_verb,
    "results": _results,
    "download": _download,
    "cancel": _cancel,
}


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _fail(message: str, status: int) -> int:
    print(f"deadweight: error: {message}", file=sys.stderr)
    return status
