"""The files a job publishes, read back: results and statistics as JSON and CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from pruning.report import write_results, write_stats
from pruning.report.labels import layer_widths, threshold_label
from pruning.results import Results
from tests.engine.sample_results import WIDTHS, make_results, make_stats


def test_results_fixture_is_what_the_choice_gives() -> None:
    r = make_results()
    assert r.recommended == 1 and r.pareto == [0, 1, 2, 3, 4]


def test_write_results_json(tmp_path: Path) -> None:
    results = make_results()
    paths = write_results(results, tmp_path)
    assert [p.name for p in paths] == ["results.json", "results.csv"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps(results.as_dict()))
    assert data["recommended"] == 1 and data["candidates"][2]["same_as"] == 0
    # No temporary files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json"]


def test_write_results_json_has_no_nan(tmp_path: Path) -> None:
    r = make_results()
    broken = Results(**{**r.__dict__, "candidates": [*r.candidates[:1]]})
    object.__setattr__(broken.candidates[0], "metric", math.nan)
    write_results(broken, tmp_path)
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["candidates"][0]["metric"] is None


def test_write_results_csv(tmp_path: Path) -> None:
    results = make_results()
    write_results(results, tmp_path)
    with (tmp_path / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 + len(results.candidates)
    base = rows[0]
    assert base["index"] == "baseline" and base["threshold"] == ""
    assert float(base["metric"]) == 0.967 and int(base["parameters"]) == 11616
    assert [base[f"kept:{n}"] for n in WIDTHS] == ["128", "64", "32"]
    first, frac = rows[1], rows[3]
    assert first["index"] == "0" and first["threshold"] == "0.1:0.4"
    assert (first["threshold_mean"], first["threshold_std"], first["threshold_fraction"]) == (
        "0.1",
        "0.4",
        "",
    )
    assert frac["threshold"] == "f0.2" and frac["threshold_fraction"] == "0.2"
    assert frac["same_as"] == "0" and first["same_as"] == ""
    assert [r["pareto"] for r in rows[1:]] == ["true"] * 5
    assert [r["recommended"] for r in rows[1:]] == ["false", "true", "false", "false", "false"]
    for row, c in zip(rows[1:], results.candidates, strict=True):
        assert float(row["metric"]) == c.metric and float(row["metric_drop"]) == c.metric_drop
        assert int(row["parameters"]) == c.parameters and int(row["bytes"]) == c.bytes
        assert float(row["size_reduction"]) == c.size_reduction  # full precision
        assert row["artifact"] == c.artifact
        assert {n: int(row[f"kept:{n}"]) for n in WIDTHS} == c.kept


def test_layer_widths_and_labels() -> None:
    assert layer_widths(make_results()) == WIDTHS
    assert threshold_label({"mean": 0.1, "std": 0.4}) == "0.1:0.4"
    assert threshold_label({"std": 0.25}) == "std<0.25"
    assert threshold_label({"fraction": 0.3}) == "f0.3"
    assert threshold_label({"score": 2.0}) == "score=2"


def test_write_stats(tmp_path: Path) -> None:
    layers = make_stats()
    paths = write_stats(layers, tmp_path)
    assert [p.name for p in paths] == ["stats.json", "stats.csv"]
    data = json.loads((tmp_path / "stats.json").read_text())
    assert [entry["name"] for entry in data["layers"]] == list(WIDTHS)
    assert data["layers"][1] == layers[1].as_dict()
    with (tmp_path / "stats.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "layer", "neuron", "mean", "std", "abs_mean", "zero_fraction", "min", "max",
    ]  # fmt: skip
    assert len(rows) == sum(WIDTHS.values())
    row = rows[128 + 7]  # fc2, neuron 7
    assert (row["layer"], row["neuron"]) == ("fc2", "7")
    s = layers[1]
    values = [s.mean[7], s.std[7], s.abs_mean[7], s.zero_fraction[7], s.min[7], s.max[7]]
    keys = ["mean", "std", "abs_mean", "zero_fraction", "min", "max"]
    assert [float(row[k]) for k in keys] == values
