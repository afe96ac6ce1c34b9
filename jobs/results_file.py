"""A published job's `results.json`, read by the worker's side for what it reports about the
job (the webhook's recommended candidate, the candidates counted on /metrics)."""

from __future__ import annotations

import json
from typing import Any

from jobs.blobs import BlobStore
from jobs.job_config import RESULTS_JSON

# results.json is the engine's own file; a larger one is not read to report on it.
MAX_RESULTS_BYTES = 16 * 1024 * 1024


def read_results(blobs: BlobStore, job_id: str) -> dict[str, Any] | None:
    """The job's published results, or None when missing, too large or unreadable."""
    path = blobs.job_dir(job_id) / RESULTS_JSON
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            return None
        results = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None
