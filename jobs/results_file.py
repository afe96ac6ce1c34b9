"""A published job's `results.json`, read by the worker's side for what it reports about the
job (the webhook's recommended candidate, the candidates counted on /metrics)."""

from __future__ import annotations

import json
import logging
from typing import Any

from jobs.blobs import BlobStore
from jobs.job_config import RESULTS_JSON

log = logging.getLogger("deadweight.blobs")

# results.json is the engine's own file; a larger one is not read to report on it.
MAX_RESULTS_BYTES = 16 * 1024 * 1024


def read_results(blobs: BlobStore, job_id: str) -> dict[str, Any] | None:
    """The job's published results, or None when missing, too large or unreadable."""
    try:
        raw = blobs.read_artifact(job_id, RESULTS_JSON, MAX_RESULTS_BYTES)
        results = None if raw is None else json.loads(raw)
    except ValueError:
        return None
    except Exception as exc:  # an S3 store that cannot be reached: report without them
        log.warning("job %s: its results could not be read: %s", job_id, exc)
        return None
    return results if isinstance(results, dict) else None
