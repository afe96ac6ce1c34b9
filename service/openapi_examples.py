"""The request bodies' examples in the OpenAPI document, shown by /docs and /redoc.

Each request example is a body the API accepts once its IDs name real uploads:
tests/service/test_openapi_examples.py posts every documented request example to the app.
Swagger UI shows the first one when a user presses "Try it out"; without examples it would
build one from the schema, which fills every optional field (a threshold with both `mean`
and `fraction`, `search` with `thresholds`) and is refused.

The response examples are set on the finished document (`document_examples`): FastAPI drops
every null from what it generates, and a results body without its nulls (`"recommended":
null`, a candidate's `"recovery": null`) would no longer fit its own schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from jobs.job_config import DEFAULT_MAX_METRIC_DROP

MODEL_ID = "5f0c2b8e9a7d4c1e8b3a6f2d1c0e9b8a"
DATASET_ID = "9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
EVAL_DATASET_ID = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"

_SWEEP: dict[str, JsonValue] = {
    "model_id": MODEL_ID,
    "dataset_id": DATASET_ID,
    "criterion": "reconstruction",
    "thresholds": [{"fraction": 0.3}, {"fraction": 0.5}, {"fraction": 0.7}],
    "compensate": "linear",
    "max_metric_drop": DEFAULT_MAX_METRIC_DROP,
}
_SEARCH: dict[str, JsonValue] = {
    "model_id": MODEL_ID,
    "dataset_id": DATASET_ID,
    "eval_dataset_id": EVAL_DATASET_ID,
    "search": True,
    "max_metric_drop": DEFAULT_MAX_METRIC_DROP,
    "recovery": {"epochs": 3, "lr": 0.001, "max_seconds": 600},
}
_SEED: dict[str, JsonValue] = {
    "model_id": MODEL_ID,
    "dataset_id": DATASET_ID,
    "criterion": "seed",
    "thresholds": [{"mean": 0.1, "std": 0.4}, {"mean": 0.5, "std": 1.0}],
    "compensate": "mean",
    "metric": "accuracy",
}

# The bodies of /results and /stats, shown instead of ones made up from their schemas (which
# fill a `threshold` with additionalProp1...); checked against the closed schemas in
# tests/service/test_result_schemas.py.
_HOLDOUT_RULE = "numpy.random.default_rng(seed).permutation(samples)[:held] are held out"
_RESULTS_EXAMPLE: dict[str, JsonValue] = {
    "metric": "accuracy",
    "criterion": "reconstruction",
    "compensate": "linear",
    "max_metric_drop": 0.005,
    "baseline": {"metric": 0.967, "parameters": 582154, "bytes": 2331011, "macs": 580608},
    "candidates": [
        {
            "index": 0,
            "threshold": {"fraction": 0.3},
            "metric": 0.966,
            "metric_drop": 0.001,
            "parameters": 408010,
            "bytes": 1634563,
            "macs": 406528,
            "size_reduction": 0.299,
            "kept": {"fc1": 358, "fc2": 180},
            "kept_fraction": {"fc1": 0.699, "fc2": 0.703},
            "artifact": "pruned-0.pt2",
            "same_as": None,
            "metric_before_recovery": None,
            "recovery": None,
            "allocation": "global",
        }
    ],
    "pareto": [0],
    "recommended": 0,
    "layers": ["fc1", "fc2"],
    "frozen": [{"name": "fc3", "reason": "its channels are a model output"}],
    "notes": [],
    "allocation": "global",
    "search": False,
    "recovery": None,
    "data": {
        "statistics": "dataset, rows not held out",
        "evaluation": "dataset, held-out rows",
        "holdout": {"fraction": 0.2, "seed": 0, "samples": 360, "rule": _HOLDOUT_RULE},
    },
}
_STATS_EXAMPLE: dict[str, JsonValue] = {
    "layers": [
        {
            "name": "fc1",
            "neurons": 3,
            "count": 1437,
            "mean": [0.412, 0.0, 1.93],
            "std": [0.377, 0.0, 1.208],
            "abs_mean": [0.412, 0.0, 1.93],
            "zero_fraction": [0.31, 1.0, 0.02],
            "min": [0.0, 0.0, 0.0],
            "max": [2.16, 0.0, 6.71],
        }
    ]
}


# OpenAPI's named examples of POST /v1/jobs (the media type's `examples`).
JOB_CREATE_EXAMPLES: dict[str, dict[str, JsonValue]] = {
    "sweep": {"summary": "a sweep of fractions (the default criterion)", "value": _SWEEP},
    "search": {
        "summary": "the largest cut within max_metric_drop, with recovery",
        "value": _SEARCH,
    },
    "seed": {"summary": "absolute thresholds (the original recipe)", "value": _SEED},
}

_RESPONSE_EXAMPLES: dict[str, dict[str, JsonValue]] = {
    "ResultsPublic": _RESULTS_EXAMPLE,
    "StatsPublic": _STATS_EXAMPLE,
}


def document_examples(document: dict[str, Any]) -> None:
    """Give the response schemas above their example, in the generated document, in place."""
    schemas = document.get("components", {}).get("schemas", {})
    for name, body in _RESPONSE_EXAMPLES.items():
        if name in schemas:
            schemas[name]["examples"] = [body]
