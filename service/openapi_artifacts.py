"""What `GET /v1/jobs/{id}/artifacts/{name}` answers, for the OpenAPI document: one media type
per kind of published file, taken from `jobs.blobs.media_type`, the function the route serves
them by, so the document and the responses cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from jobs.blobs import media_type
from jobs.job_config import (
    REPORT_HTML,
    RESULTS_CSV,
    RESULTS_JSON,
    TRADEOFF_PNG,
    onnx_model_name,
    pruned_model_name,
)

# One published file of each kind, and which files share its media type.
ARTIFACT_KINDS: dict[str, str] = {
    REPORT_HTML: "report.html, shown inline (not an attachment) under a strict CSP",
    TRADEOFF_PNG: "the plots (stats.png, tradeoff.png)",
    RESULTS_CSV: "the tables (results.csv, stats.csv)",
    RESULTS_JSON: "results.json, stats.json, plans.json",
    pruned_model_name(0): "pruned-<k>.pt2, the pruned programs (a .pt2 is a zip archive)",
    onnx_model_name(0): "pruned-<k>.onnx and baseline.onnx (formats with onnx), any other file",
}


_BYTES: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}


def artifact_content() -> dict[int | str, dict[str, Any]]:
    """The artifact route's 200: a media type per kind of file, and which files have it."""
    kinds: dict[str, list[str]] = {}
    for name, what in ARTIFACT_KINDS.items():
        essence = media_type(name).split(";")[0].strip()  # text types are sent with a charset
        kinds.setdefault(essence, []).append(what)
    lines = "\n".join(f"- `{t}`: {', '.join(w)}" for t, w in kinds.items())
    return {
        200: {
            "description": "the file, as an attachment except report.html; its media type by "
            f"kind:\n\n{lines}",
            # No schema for JSON: a client would validate the file against it as a string.
            "content": {t: {} if t == "application/json" else _BYTES for t in kinds},
        }
    }
