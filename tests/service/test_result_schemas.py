"""The OpenAPI schemas of `/results` and `/stats` against the files of a real run.

`deadweight prune` runs the engine a service job runs (`pruning.sweep`) and writes the same
files into its folder; the job here uses linear compensation without evaluation data (a
held-out part) and recovery, so every optional part of the results is present. The files
are validated against the *published* document's schemas, with every object closed
(`additionalProperties: false`), so a key the engine writes but the document does not list
fails here, as does a documented type the engine does not write.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import DEADWEIGHT, base_env
from tests.service.api_helpers import npz_bytes


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, model_bytes: bytes) -> Path:
    folder = tmp_path_factory.mktemp("prune")
    (folder / "mlp.pt2").write_bytes(model_bytes)
    (folder / "data.npz").write_bytes(npz_bytes(samples=64))
    out = folder / "out"
    command = [DEADWEIGHT, "prune", "mlp.pt2", "data.npz", "--thresholds", "f0.3,f0.5"]
    command += ["--recover-epochs", "1", "--format", "onnx", "--out", str(out)]
    done = subprocess.run(
        command, cwd=folder, env=base_env(folder / "data"), capture_output=True, timeout=240
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return out


def _closed(schema: Any) -> Any:
    """Every object schema with properties, closed to keys it does not list."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _validator(client: TestClient, component: str) -> Any:
    spec = client.get("/openapi.json").json()
    root = {
        "$ref": f"#/components/schemas/{component}",
        "components": _closed(copy.deepcopy(spec["components"])),
    }
    return jsonschema_rs.Draft202012Validator(root)


def _errors(validator: Any, document: Any) -> list[str]:
    return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize(
    ("route", "component", "name"),
    [("results", "ResultsPublic", "results.json"), ("stats", "StatsPublic", "stats.json")],
)
def test_the_documented_schema_is_what_a_job_publishes(
    client: TestClient, published: Path, route: str, component: str, name: str
) -> None:
    spec = client.get("/openapi.json").json()
    ok = spec["paths"][f"/v1/jobs/{{job_id}}/{route}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{component}"
    }
    document = json.loads((published / name).read_text())
    assert _errors(_validator(client, component), document) == []


@pytest.mark.parametrize("component", ["ResultsPublic", "StatsPublic"])
def test_the_documented_examples_fit_the_schema(client: TestClient, component: str) -> None:
    spec = client.get("/openapi.json").json()
    examples = spec["components"]["schemas"][component]["examples"]
    assert examples
    for example in examples:
        assert _errors(_validator(client, component), example) == []


def test_every_optional_part_was_exercised(published: Path) -> None:
    """The run above is the one that fills what the schemas make optional."""
    results = json.loads((published / "results.json").read_text())
    assert results["recovery"] is not None
    assert {"holdout", "training"} <= set(results["data"])
    assert results["frozen"] and results["candidates"]
    assert all(c["recovery"] is not None for c in results["candidates"])
    assert all(c["onnx"] is not None for c in results["candidates"])
    assert results["baseline"]["onnx"] is not None
    assert results["latency"] is not None and results["baseline"]["latency_ms"] is not None
    assert all(c["latency_ms"]["batch_1"] is not None for c in results["candidates"])


def test_a_file_with_an_undocumented_key_is_caught(client: TestClient, published: Path) -> None:
    """The check above can fail: an engine that adds a key without the schema is caught."""
    results = json.loads((published / "results.json").read_text())
    results["candidates"][0]["latency_ms"] = 1.5
    errors = _errors(_validator(client, "ResultsPublic"), results)
    assert errors and "latency_ms" in errors[0]
