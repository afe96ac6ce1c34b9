"""Adding to a result set's `results.json` before it is published: notes, and the MLflow
run the job logged.

The engine wrote the file (`pruning.report.files`); the worker amends it in the staging
folder, before the manifest is written (`worker.publish`), in the engine's own format, under
a temporary name renamed into place, so a reader never sees half a file. The keys added are
documented in `service.result_schemas`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.job_config import RESULTS_JSON
from jobs.mlflow_config import RESULTS_KEY, MlflowRun


def staged_results(folder: Path) -> dict[str, Any]:
    """The result set's results.json.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not a JSON object.
    """
    results = json.loads((folder / RESULTS_JSON).read_bytes())
    if not isinstance(results, dict):
        raise ValueError(f"{RESULTS_JSON} is not a JSON object")
    return results


def amend_results(folder: Path, notes: Sequence[str] = (), run: MlflowRun | None = None) -> None:
    """Append `notes` to results.json's `notes` and set its `mlflow` block to `run`.

    Raises:
        OSError, ValueError: results.json cannot be read or written.
    """
    if not notes and run is None:
        return
    results = staged_results(folder)
    results["notes"] = [*results.get("notes", []), *notes]
    if run is not None:
        results[RESULTS_KEY] = run.to_json()
    path = folder / RESULTS_JSON
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # The engine's format (pruning.report.files): two-space indents and a final newline.
        tmp.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_partial_writes(folder: Path) -> None:
    """Temporary files a writer stopped mid-way left behind: they must not be published."""
    for leftover in folder.glob(f".{RESULTS_JSON}.*.tmp"):
        leftover.unlink(missing_ok=True)
