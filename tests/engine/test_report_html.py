"""report.html, read back with an HTML parser: what it holds, what it links, that it loads
nothing from elsewhere and runs no script, that users' names stay text, and that no two
point labels of a chart overlap."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pruning.report import write_report, write_results, write_stats
from pruning.report.label_placement import Anchor, Box, place_labels
from pruning.report.report_html import render_report
from pruning.report.svg_canvas import text_size
from pruning.report.svg_charts import Point, tradeoff_chart
from tests.engine.report_page import Page, assert_report_of, assert_self_contained
from tests.engine.sample_results import make_results, make_stats

HOSTILE = '<script>alert("x")</script>'


def _sample_folder(folder: Path) -> None:
    write_results(make_results(), folder)
    write_stats(make_stats(), folder)
    for c in make_results().candidates:
        (folder / c.artifact).write_bytes(b"PK")
    (folder / ".pruned-9.pt2.tmp").write_bytes(b"half")  # being written: never linked


def test_the_report_of_a_sweep(tmp_path: Path) -> None:
    _sample_folder(tmp_path)
    write_report(tmp_path)
    page = assert_report_of(tmp_path)
    text = " ".join(" ".join(page.text).split())
    assert "Recommended: candidate #1 (0.5:1)" in text
    frozen = [a for a in page.all("table") if a.get("id") == "frozen-groups"]
    assert frozen and "model output" in text
    assert len(page.all("svg")) == 2  # metric vs. parameters, statistics: no latency measured
    assert (tmp_path / "report.html").stat().st_size < 40_000


def test_users_names_stay_text(tmp_path: Path) -> None:
    results = make_results().as_dict()
    stats = [s.as_dict() for s in make_stats()]
    hostile_layer = HOSTILE + " fc1"
    results["layers"][0] = hostile_layer
    for c in results["candidates"]:
        c["kept"] = {hostile_layer if k == "fc1" else k: v for k, v in c["kept"].items()}
        c["kept_fraction"] = {
            hostile_layer if k == "fc1" else k: v for k, v in c["kept_fraction"].items()
        }
    stats[0]["name"] = hostile_layer
    results["frozen"] = [{"name": HOSTILE, "reason": f"op {HOSTILE}"}]
    results["notes"] = [HOSTILE]
    hostile_file = 'x"><img src=y onerror=alert(1)>.pt2'
    results["candidates"][1]["artifact"] = hostile_file
    html = render_report(results, stats, {hostile_file: 2, "javascript:alert(1)": 3})
    page = Page(html)
    assert_self_contained(html, page)
    assert not page.all("img")
    hrefs = {href for href, _ in page.links}
    assert hrefs == {
        "x%22%3E%3Cimg%20src%3Dy%20onerror%3Dalert%281%29%3E.pt2",
        "javascript%3Aalert%281%29",
    }
    text = "".join(page.text)
    assert HOSTILE + " fc1" in text and f"op {HOSTILE}" in text and hostile_file in text


def _with_latency(results: dict[str, Any]) -> dict[str, Any]:
    measured = copy.deepcopy(results)
    for i, entry in enumerate([measured["baseline"], *measured["candidates"]]):
        entry["latency_ms"] = {
            "batch_1": {"median": 2.0 - 0.1 * i, "p90": 2.5},
            "batch": {"size": 64, "median": 20.0, "p90": 25.0},
        }
    return measured


def test_a_latency_panel_only_when_latency_was_measured() -> None:
    results = make_results().as_dict()
    stats = [s.as_dict() for s in make_stats()]
    page = Page(render_report(_with_latency(results), stats, {}))
    titles = [t for t in page.text if t.endswith("vs. latency")]
    assert len(page.all("svg")) == 3 and titles == ["accuracy vs. latency"]
    assert "latency, ms (batch 1, median)" in page.text
    assert "accuracy vs. latency" not in render_report(results, stats, {})
    fixed = _with_latency(results)  # a model exported with a fixed batch: timed at its size
    for entry in [fixed["baseline"], *fixed["candidates"]]:
        entry["latency_ms"]["batch_1"] = None
    assert "latency, ms (batch 64, median)" in Page(render_report(fixed, stats, {})).text


def test_a_lower_is_better_metric_reads_as_an_increase() -> None:
    results = make_results("mse").as_dict()
    page = Page(render_report(results, [], {}))
    text = " ".join(" ".join(page.text).split())
    assert "mse (lower is better)" in text and "increase of at most 0.005" in text
    assert "No prunable layer" in text


def _overlaps(boxes: list[Box]) -> list[tuple[Box, Box]]:
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.intersects(b)]


@pytest.mark.parametrize("count", [2, 12, 40])
def test_labels_of_close_points_never_overlap(count: int) -> None:
    plot = Box(70, 28, 480, 300)
    # Points a pixel or two apart, a few in one spot, some on the plot's edge.
    anchors = [Anchor(300 + (i % 5) * 1.5, 150 + (i // 5) * 2.0, f"#{i}") for i in range(count)]
    anchors += [Anchor(550, 28, "#edge"), Anchor(70, 328, "#corner")]
    placed = place_labels(anchors, plot, gutter_x=plot.right + 12)
    assert [p.anchor for p in placed] == anchors
    assert not _overlaps([p.box for p in placed])
    for p in placed:
        assert p.box.inside(plot) or (p.leader and p.box.x >= plot.right)


class _SvgLabels(HTMLParser):
    """The boxes of a chart's point labels: <text dominant-baseline="central"> at (x, y)."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[Box] = []
        self.texts: list[str] = []
        self._at: tuple[float, float] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "text" and a.get("dominant-baseline") == "central" and "text-anchor" not in a:
            self._at = (float(a["x"] or 0), float(a["y"] or 0))

    def handle_data(self, data: str) -> None:
        if self._at is not None:
            width, height = text_size(data)
            self.boxes.append(Box(self._at[0], self._at[1] - height / 2, width, height))
            self.texts.append(data)
            self._at = None


def test_a_crowded_chart_draws_no_overlapping_labels() -> None:
    # 30 candidates within 0.2% of each other in size and metric: one cluster on the chart.
    points = [
        Point(10_000 + i * 3, 0.95 + (i % 3) * 1e-4, f"#{i}", "tip", "candidate") for i in range(30)
    ]
    points.append(Point(20_000, 0.97, "baseline", "tip", "baseline"))
    svg = tradeoff_chart(points, title="t", x_label="x", y_label="y", budget_y=0.96)
    labels = _SvgLabels()
    labels.feed(svg)
    texts = ",".join(t for t in labels.texts)
    assert sorted(texts.split(",")) == sorted(p.label for p in points)  # every point labelled
    assert not _overlaps(labels.boxes)


def test_a_report_of_a_folder_without_candidates(tmp_path: Path) -> None:
    results = make_results().as_dict()
    results.update(candidates=[], pareto=[], recommended=None, layers=[])
    (tmp_path / "results.json").write_text(json.dumps(results))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "No candidate is recommended" in " ".join(Page(html).text)
