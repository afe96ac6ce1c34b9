"""The files a job publishes, read back: JSON, CSV, PNG, and the CLI's table."""

from __future__ import annotations

import csv
import json
import math
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from pruning.choice import pareto_front, recommend
from pruning.report import plots
from pruning.report.files import (
    format_table,
    layer_widths,
    threshold_label,
    write_results,
    write_stats,
)
from pruning.report.plots import plot_stats, plot_tradeoff
from pruning.results import Baseline, Candidate, LayerStats, Results

WIDTHS = {"fc1": 128, "fc2": 64, "layer1.0.conv1": 32}


def _candidate(
    index: int,
    threshold: dict[str, float],
    metric: float,
    kept: dict[str, int],
    baseline: Baseline,
    same_as: int | None = None,
) -> Candidate:
    # Parameters of an MLP 10 -> fc1 -> fc2 -> conv-ish -> 3, roughly.
    params = 10 * kept["fc1"] + kept["fc1"] * kept["fc2"] + kept["fc2"] * kept["layer1.0.conv1"]
    params += kept["layer1.0.conv1"] * 3
    return Candidate(
        index=index,
        threshold=threshold,
        metric=metric,
        metric_drop=baseline.metric - metric,
        parameters=params,
        bytes=params * 4 + 1000,
        macs=params,
        size_reduction=1 - params / baseline.parameters,
        kept=kept,
        kept_fraction={k: v / WIDTHS[k] for k, v in kept.items()},
        artifact=f"pruned-{index}.pt2",
        same_as=same_as,
    )


def make_results(
    metric_name: str = "accuracy", thresholds: list[dict[str, float]] | None = None
) -> Results:
    full = WIDTHS
    base_params = 10 * 128 + 128 * 64 + 64 * 32 + 32 * 3
    baseline = Baseline(metric=0.967, parameters=base_params, bytes=base_params * 4, macs=1)
    thresholds = thresholds or [
        {"mean": 0.1, "std": 0.4},
        {"mean": 0.5, "std": 1.0},
        {"fraction": 0.2},
        {"fraction": 0.4},
        {"fraction": 0.6},
    ]
    kepts = [
        {"fc1": 120, "fc2": 60, "layer1.0.conv1": 30},
        {"fc1": 90, "fc2": 40, "layer1.0.conv1": 30},
        {"fc1": 120, "fc2": 60, "layer1.0.conv1": 30},  # same keep-set as #0
        {"fc1": 70, "fc2": 40, "layer1.0.conv1": 20},
        {"fc1": 40, "fc2": 20, "layer1.0.conv1": 10},
    ]
    metrics = [0.966, 0.962, 0.966, 0.951, 0.80]
    candidates = [
        _candidate(i, t, m, k, baseline, same_as=0 if i == 2 else None)
        for i, (t, m, k) in enumerate(zip(thresholds, metrics, kepts, strict=True))
    ]
    points = [(c.metric, c.parameters) for c in candidates]
    return Results(
        metric_name=metric_name,
        criterion="seed",
        compensate=True,
        max_metric_drop=0.005,
        baseline=baseline,
        candidates=candidates,
        pareto=pareto_front(points, True),
        recommended=recommend(baseline.metric, points, 0.005, True),
        layers=list(full),
        frozen=[{"name": "head", "reason": "model output"}],
        notes=["a note"],
    )


def make_stats() -> list[LayerStats]:
    rng = np.random.default_rng(0)
    layers = []
    for name, n in WIDTHS.items():
        mean = rng.normal(scale=2.0, size=n)
        std = np.abs(rng.normal(scale=1.0, size=n)) * 10.0 ** rng.uniform(-3, 0, size=n)
        mean[:5], std[:5] = 0.0, 0.0  # dead ReLUs
        zero = rng.uniform(size=n)
        zero[:5] = 1.0
        layers.append(
            LayerStats(
                name=name,
                neurons=n,
                count=1000,
                mean=mean.tolist(),
                std=std.tolist(),
                abs_mean=np.abs(mean).tolist(),
                zero_fraction=zero.tolist(),
                min=(mean - 3 * std).tolist(),
                max=(mean + 3 * std).tolist(),
            )
        )
    return layers


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- results -------------------------------------------------------------------------------


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


# --- stats ---------------------------------------------------------------------------------


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


# --- plots ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criterion", "thresholds"),
    [
        ("seed", [{"mean": 0.1, "std": 0.4}, {"mean": 0.5, "std": 1.0}, {"fraction": 0.3}]),
        ("variance", [{"std": 0.01}, {"std": 0.3}]),
        ("seed", [{"fraction": 0.2}, {"fraction": 0.4}]),
    ],
)
def test_plot_stats(tmp_path: Path, criterion: str, thresholds: list[dict[str, float]]) -> None:
    path = plot_stats(make_stats(), thresholds, criterion, tmp_path / "stats.png")
    assert path == tmp_path / "stats.png"
    width, height = _png_size(path)
    assert 600 <= width <= 3000 and 300 <= height <= 3000
    assert path.stat().st_size > 10_000


def test_plot_stats_many_layers_and_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "MAX_PANELS", 6)  # keep the test fast: 32 panels take seconds
    layer = make_stats()[0]
    many = [LayerStats(**{**layer.__dict__, "name": f"l{i}"}) for i in range(9)]
    width, height = _png_size(plot_stats(many, [], "seed", tmp_path / "many.png"))
    assert width > height  # 6 panels, 4 per row: two rows
    _png_size(plot_stats([], [{"fraction": 0.2}], "seed", tmp_path / "none.png"))


def test_plot_tradeoff(tmp_path: Path) -> None:
    path = plot_tradeoff(make_results(), tmp_path / "tradeoff.png")
    width, height = _png_size(path)
    assert 600 <= width <= 2000 and 400 <= height <= 1500


def test_plot_tradeoff_mse_without_recommendation(tmp_path: Path) -> None:
    r = make_results("mse")
    r = Results(**{**r.__dict__, "recommended": None, "pareto": [4]})
    _png_size(plot_tradeoff(r, tmp_path / "mse.png"))


def test_plots_from_threads(tmp_path: Path) -> None:
    """No pyplot state: workers may draw concurrently."""
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            plot_tradeoff(make_results(), tmp_path / f"t{i}.png")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(_png_size(tmp_path / f"t{i}.png") for i in range(4))


# --- the table -----------------------------------------------------------------------------


def test_format_table() -> None:
    table = format_table(make_results())
    lines = table.splitlines()
    assert lines[0].split() == [
        "#", "threshold", "accuracy", "drop", "params", "reduction", "fc1", "fc2", "laye~conv1",
    ]  # fmt: skip
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["-", "baseline", "0.9670", "11,616", "128", "64", "32"]
    rows = {line.split()[0]: line for line in lines[3:8]}
    assert rows["1"].split() == [
        "1", "0.5:1", "0.9620", "+0.0050", "5,790", "50.2%", "90", "40", "30", "*",
        "<-", "recommended",
    ]  # fmt: skip
    assert rows["2"].rstrip().endswith("* (= #0)")
    assert "recommended" not in rows["0"]
    assert (
        "recommended: #1 (0.5:1), the smallest candidate whose accuracy drop is at most 0.005"
        in table
    )
    # Fixed width: every row of the table proper is aligned on the metric column.
    column = lines[0].index("accuracy") + len("accuracy")
    assert all(line[column - 1] != " " for line in lines[2:8])


def test_format_table_mse_many_layers_nothing_recommended() -> None:
    r = make_results("mse")
    layers = [f"layer{i}" for i in range(12)]
    r = Results(**{**r.__dict__, "recommended": None, "layers": layers})
    table = format_table(r)
    assert table.splitlines()[0].split()[-1] == "kept"
    assert "recommended: none, no candidate's mse increase is at most 0.005" in table
    assert "<- recommended" not in table
