"""The CLI's table of a sweep: fixed-width rows, the Pareto front, the recommendation."""

from __future__ import annotations

from pruning.report import format_table
from pruning.results import Results
from tests.engine.sample_results import make_results


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
