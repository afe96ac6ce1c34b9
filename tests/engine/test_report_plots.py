"""The plots a job publishes (PNG): statistics and trade-off, drawn without pyplot."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pruning.report import plot_stats, plot_tradeoff, stats_plot
from pruning.results import LayerStats, Results
from tests.engine.sample_results import make_results, make_stats, png_size


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
    width, height = png_size(path)
    assert 600 <= width <= 3000 and 300 <= height <= 3000
    assert path.stat().st_size > 10_000


def test_plot_stats_many_layers_and_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_plot, "MAX_PANELS", 6)  # keep the test fast: 32 panels take seconds
    layer = make_stats()[0]
    many = [LayerStats(**{**layer.__dict__, "name": f"l{i}"}) for i in range(9)]
    width, height = png_size(plot_stats(many, [], "seed", tmp_path / "many.png"))
    assert width > height  # 6 panels, 4 per row: two rows
    png_size(plot_stats([], [{"fraction": 0.2}], "seed", tmp_path / "none.png"))


def test_plot_tradeoff(tmp_path: Path) -> None:
    path = plot_tradeoff(make_results(), tmp_path / "tradeoff.png")
    width, height = png_size(path)
    assert 600 <= width <= 2000 and 400 <= height <= 1500


def test_plot_tradeoff_mse_without_recommendation(tmp_path: Path) -> None:
    r = make_results("mse")
    r = Results(**{**r.__dict__, "recommended": None, "pareto": [4]})
    png_size(plot_tradeoff(r, tmp_path / "mse.png"))


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
    assert all(png_size(tmp_path / f"t{i}.png") for i in range(4))
