"""What `deadweight submit`'s arguments become: uploads (or IDs given instead), and the job
body's options, named as the HTTP API names them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deadweight_client import Client


def resolve_upload(client: Client, kind: str, ref: str, args: argparse.Namespace) -> str:
    """The ID of `ref`: a file is uploaded (a model is waited for until the service has
    inspected it, so a refused model fails here, naming why); anything else is an ID."""
    path = Path(ref)
    if path.is_file():
        quiet = args.json
        if not quiet:
            print(f"uploading {path} ...", file=sys.stderr)
        if kind == "model":
            record: Any = client.upload_model(path)
        else:
            record = client.upload_dataset(
                path, label_column=args.label_column, no_labels=args.no_labels
            )
        if not quiet:
            print(f"{kind} {record['id']} ({path.name})", file=sys.stderr)
        return str(record["id"])
    if path.suffix or "/" in ref:
        raise FileNotFoundError(f"{ref}: no such file (nor an uploaded {kind}'s ID)")
    return ref


def job_options(args: argparse.Namespace) -> dict[str, Any]:
    """The body's fields the flags set (None: the server's default)."""
    recovery = None
    if args.recover_epochs is not None:
        recovery = {
            "epochs": args.recover_epochs,
            "lr": args.recover_lr,
            "max_seconds": args.recover_max_seconds,
        }
    return {
        "thresholds": args.thresholds,  # the CLI's text; the client turns it into objects
        "criterion": args.criterion,
        "compensate": args.compensate,
        "allocation": args.allocation,
        "search": args.search or None,
        "recovery": recovery,
        "seed": args.seed,
        "metric": args.metric,
        "max_metric_drop": args.max_metric_drop,
        # pt2 is always written; None leaves the server's default (pt2 alone).
        "formats": list(dict.fromkeys(["pt2", *args.formats])) if args.formats else None,
        "max_latency_ms": args.max_latency_ms,
        "webhook": args.webhook_url,
        "mlflow": _mlflow(args),
    }


def _mlflow(args: argparse.Namespace) -> dict[str, str] | None:
    if args.mlflow_experiment is None:
        if args.mlflow_run_name is not None:
            raise ValueError("--mlflow-run-name names a run of --mlflow-experiment: give both")
        return None
    mlflow = {"experiment": args.mlflow_experiment}
    if args.mlflow_run_name is not None:
        mlflow["run_name"] = args.mlflow_run_name
    return mlflow
