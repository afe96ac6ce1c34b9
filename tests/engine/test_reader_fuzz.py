"""Fuzzing the safe reader: mutated archives give a model or a typed refusal, nothing else.

Each example starts from real `torch.export.save` archives (an MLP, and a decomposed
program with batch norm) and applies a few mutations: JSON values replaced anywhere in the
graph or the weights config (integers at the edges of int64, reserved names, symbolic
expressions, deep nesting), keys dropped, list items duplicated, tensor sizes, strides and
offsets redrawn, zip entries dropped, truncated or corrupted. The inspection
(`pruning.describe.describe_model`: the reader, `module()`, the channel analysis) must then
return or raise a `PruningError`; any other exception, a native crash (the test process
dies) or a hang (pytest-timeout) fails the test.

`DEADWEIGHT_FUZZ_EXAMPLES` sets the number of examples (default 200).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pruning.describe import describe_model
from pruning.errors import PruningError
from tests.hostile.archives import batch_norm_model, valid_model

EXAMPLES = int(os.environ.get("DEADWEIGHT_FUZZ_EXAMPLES", "200"))

_INTS = st.one_of(
    st.integers(-3, 20),
    st.sampled_from([2**31, 2**40, 2**62, 2**63, 2**64, -(2**63), 10**30, 100_000_000]),
)
_NAMES = st.sampled_from(
    ["forward", "training", "_modules", "graph", "code", "fc1", "fc1.weight", "x", "s77",
     "linear", "weight_0", "tensor_0", "torch.ops.aten.relu.out", "torch.ops.aten.view.default",
     "torch.ops.aten._native_batch_norm_legit_no_training.default", "", "a" * 300]
)  # fmt: skip
_EXPRS = st.sampled_from(
    ["Symbol('s77', positive=True, integer=True)", "Pow(Integer(3), Integer(99999999))",
     "Mul(Integer(2), Symbol('s77', positive=True, integer=True))", "Integer(" + "9" * 40 + ")",
     "Max(" * 30 + "Symbol('s0')" + ")" * 30, "FloorDiv(Symbol('s0'), Integer(0))",
     "Pow(Symbol('s0'), Integer(-1))", "Rational(1, 0)", "3**3**3**3", "oo", "-oo"]
)  # fmt: skip
_LEAVES = st.one_of(
    _INTS, _NAMES, _EXPRS, st.none(), st.booleans(), st.floats(allow_nan=False),
    st.text(max_size=12),
)  # fmt: skip
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
            ["as_int", "as_expr", "as_tensor", "name", "expr_str", "hint", "as_ints",
             "as_none", "as_sym_int", "as_name", "sizes", "strides"]), inner, max_size=3),
    ),
    max_leaves=8,
)  # fmt: skip


def _archive(src: bytes) -> tuple[list[zipfile.ZipInfo], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(src)) as zf:
        return zf.infolist(), {i.filename: zf.read(i) for i in zf.infolist()}


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, bytes]]:
    folder = tmp_path_factory.mktemp("bases")
    return [_archive(valid_model(folder))[1], _archive(batch_norm_model(folder))[1]]


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON document, so one can be replaced or dropped."""
    out: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            out.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return out


def _mutate_json(data: st.DataObject, doc: Any) -> None:
    slots = _slots(doc)
    if not slots:
        return
    container, key = slots[data.draw(st.integers(0, len(slots) - 1))]
    action = data.draw(st.sampled_from(["replace", "replace", "drop", "duplicate", "tensor"]))
    if action == "replace":
        container[key] = data.draw(_VALUES)
    elif action == "drop":
        del container[key]
    elif action == "duplicate" and isinstance(container, list):
        container.insert(key, copy.deepcopy(container[key]))
    elif action == "tensor" and isinstance(container[key], dict) and "sizes" in container[key]:
        meta = container[key]
        rank = data.draw(st.integers(0, 5))
        meta["sizes"] = [{"as_int": data.draw(_INTS)} for _ in range(rank)]
        meta["strides"] = [{"as_int": data.draw(_INTS)} for _ in range(rank)]
        meta["storage_offset"] = {"as_int": data.draw(_INTS)}


def _mutate_entries(data: st.DataObject, entries: dict[str, bytes]) -> None:
    name = data.draw(st.sampled_from(sorted(entries)))
    action = data.draw(st.sampled_from(["drop", "truncate", "flip", "rename", "json"]))
    if action == "drop":
        del entries[name]
    elif action == "truncate":
        entries[name] = entries[name][: data.draw(st.integers(0, len(entries[name])))]
    elif action == "flip" and entries[name]:
        raw = bytearray(entries[name])
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        entries[name] = bytes(raw)
    elif action == "rename":
        suffix = data.draw(st.sampled_from(["x", "../x", "weight_99", "custom_obj_0", "/"]))
        entries[name.rsplit("/", 1)[0] + "/" + suffix] = entries.pop(name)
    elif name.endswith(".json"):
        try:
            doc = json.loads(entries[name])
        except ValueError:
            return  # already truncated or corrupted by an earlier mutation
        _mutate_json(data, doc)
        entries[name] = json.dumps(doc).encode()


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, raw in entries.items():
            zf.writestr(name, raw)
    return out.getvalue()


@pytest.mark.timeout(600)
@settings(
    max_examples=EXAMPLES,
    deadline=None,  # slow examples are caught by the per-run timeout instead
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_archives_are_read_or_refused(
    data: st.DataObject, bases: list[dict[str, bytes]], tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    entries = dict(bases[data.draw(st.integers(0, len(bases) - 1))])
    docs = {n: json.loads(raw) for n, raw in entries.items() if n.endswith(".json")}
    model = next(n for n in docs if n.endswith("models/model.json"))
    config = next(n for n in docs if n.endswith("weights_config.json"))
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from([model, model, config, "zip"]))
        if target == "zip":
            _mutate_entries(data, entries)
        elif target in entries:
            _mutate_json(data, docs[target])
            entries[target] = json.dumps(docs[target]).encode()
    path = tmp_path / "fuzzed.pt2"
    path.write_bytes(_zip(entries))
    with contextlib.suppress(PruningError):  # a typed refusal: what a hostile file must get
        describe_model(path, max_parameters=10**9)
