"""The safe reader: it rebuilds what torch.export.save wrote, and refuses what is unsafe."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from pruning.errors import UnsafeModel
from pruning.reader import ArchiveLimits, read_program
from pruning.reader.op_allowlist import is_allowed_target
from pruning.reader.sym_expr import check_expr
from tests.hostile.archives import Canary
from tests.tiny_models import MLP, export_to, randomize_bn


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return export_to(randomize_bn(MLP()), tmp_path / "model.pt2")


def _rewrite(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """Copy an archive, letting `edit(name, data)` change, drop (None) or add entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
        extra = edit("__extra__", b"")
        if isinstance(extra, list):
            for name, data in extra:
                zout.writestr(name, data)
    return dst


def _edit_json(suffix: str, change):  # type: ignore[no-untyped-def]
    def edit(name: str, data: bytes) -> bytes | list[tuple[str, bytes]] | None:
        if name.endswith(suffix):
            doc = json.loads(data)
            change(doc)
            return json.dumps(doc).encode()
        return data if name != "__extra__" else []

    return edit


def test_reads_back_what_torch_saved(saved: Path) -> None:
    program = read_program(saved)
    trusted = torch.export.load(saved)  # trusted: the test wrote this file itself
    x = torch.randn(9, 6)
    torch.testing.assert_close(program.module()(x), trusted.module()(x), rtol=0, atol=0)
    assert program.example_inputs is None  # never read from the file


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.pt2"
    path.write_bytes(b"hello")
    with pytest.raises(UnsafeModel, match="not a zip"):
        read_program(path)


def test_pickled_weight_is_refused_and_never_unpickled(saved: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    payload = pickle.dumps(Canary(canary))

    def mark(doc: dict) -> None:  # type: ignore[type-arg]
        entry = doc["config"]["fc1.weight"]
        entry["use_pickle"] = True

    bad = _rewrite(saved, tmp_path / "bad.pt2", _edit_json("model_weights_config.json", mark))
    bad = _rewrite(
        bad,
        tmp_path / "bad2.pt2",
        lambda n, d: payload if n.endswith("weights/weight_0") else (d if n != "__extra__" else []),
    )
    with pytest.raises(UnsafeModel, match="pickle"):
        read_program(bad)
    assert not canary.exists()


def test_unknown_entries_and_traversal_are_refused(saved: Path, tmp_path: Path) -> None:
    top = zipfile.ZipFile(saved).namelist()[0].split("/")[0]
    for name in (
        f"{top}/../evil",
        f"{top}/extra/notes.txt",
        f"{top}/data/constants/custom_obj_0",
        "other/models/model.json",
    ):
        bad = _rewrite(
            saved,
            tmp_path / "bad.pt2",
            lambda n, d, name=name: [(name, b"x")] if n == "__extra__" else d,
        )
        with pytest.raises(UnsafeModel):
            read_program(bad)


def test_operator_outside_the_allowlist_is_refused(saved: Path, tmp_path: Path) -> None:
    def retarget(doc: dict) -> None:  # type: ignore[type-arg]
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"

    bad = _rewrite(saved, tmp_path / "bad.pt2", _edit_json("models/model.json", retarget))
    with pytest.raises(UnsafeModel, match="not supported"):
        read_program(bad)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('touch /tmp/x')",
        "Symbol('s0').__class__",
        "open('x')",
        "s0[0]",
    ],
)
def test_symbolic_expressions_outside_the_grammar_are_refused(
    saved: Path, tmp_path: Path, expr: str
) -> None:
    def inject(doc: dict) -> None:  # type: ignore[type-arg]
        values = doc["graph_module"]["graph"]["tensor_values"]
        values["x"]["sizes"][0] = {"as_expr": {"expr_str": expr, "hint": {"as_int": 2}}}

    bad = _rewrite(saved, tmp_path / "bad.pt2", _edit_json("models/model.json", inject))
    with pytest.raises(UnsafeModel, match=r"symbolic expression|refused name"):
        read_program(bad)


def test_guards_code_is_never_executed(saved: Path, tmp_path: Path) -> None:
    canary = tmp_path / "guard-canary"

    def inject(doc: dict) -> None:  # type: ignore[type-arg]
        doc["guards_code"] = [f"__import__('os').system('touch {canary}') == 0"]

    bad = _rewrite(saved, tmp_path / "bad.pt2", _edit_json("models/model.json", inject))
    read_program(bad).module()(torch.randn(2, 6))
    assert not canary.exists()


def test_weights_that_reach_past_their_payload_are_refused(saved: Path, tmp_path: Path) -> None:
    def grow(doc: dict) -> None:  # type: ignore[type-arg]
        doc["config"]["fc1.weight"]["tensor_meta"]["storage_offset"] = {"as_int": 10_000}

    bad = _rewrite(saved, tmp_path / "bad.pt2", _edit_json("model_weights_config.json", grow))
    with pytest.raises(UnsafeModel, match="past the payload"):
        read_program(bad)


def test_zip_bomb_is_refused(saved: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pt2"
    top = zipfile.ZipFile(saved).namelist()[0].split("/")[0]
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(f"{top}/data/weights/weight_99", io.BytesIO(bytes(50 * 1024**2)).getvalue())
    with pytest.raises(UnsafeModel, match="zip bomb"):
        read_program(bomb)


class _Expanded(torch.nn.Module):
    """What torch.export.save writes with zero strides: an expanded buffer and constant."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)
        self.register_buffer("rows", torch.arange(4.0).reshape(1, 4).expand(1000, 4))
        self.table = torch.ones(3).expand(5, 3)  # a constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 6)
        return self.fc(x) + self.rows[:1] + self.table.sum()  # (N, 4)


def test_expanded_buffers_torch_writes_are_read_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    program = torch.export.export(_Expanded().eval(), (torch.randn(2, 6),))
    torch.export.save(program, tmp_path / "m.pt2")
    x = torch.randn(2, 6)
    torch.testing.assert_close(read_program(tmp_path / "m.pt2").module()(x), program.module()(x))


def test_views_may_not_claim_far_more_than_their_payload(tmp_path: Path) -> None:
    torch.manual_seed(0)
    program = torch.export.export(_Expanded().eval(), (torch.randn(2, 6),))
    torch.export.save(program, tmp_path / "m.pt2")
    with pytest.raises(UnsafeModel, match="elements more than the archive stores"):
        read_program(tmp_path / "m.pt2", ArchiveLimits(max_expanded_elements=1000))


def test_buffers_and_constants_count_against_max_parameters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    program = torch.export.export(_Expanded().eval(), (torch.randn(2, 6),))
    torch.export.save(program, tmp_path / "m.pt2")
    weights = 4 * 6 + 4  # parameters alone
    with pytest.raises(UnsafeModel, match="parameters, buffers and constants"):
        read_program(tmp_path / "m.pt2", ArchiveLimits(max_parameters=weights + 100))
    read_program(tmp_path / "m.pt2", ArchiveLimits(max_parameters=weights + 4000 + 15))


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Mul(Integer(2), Symbol('s0', positive=True, integer=True))",
        "Add(Mul(Integer(12), Pow(FloorDiv(Add(Symbol('s0', positive=True, integer=True), "
        "Integer(-1)), Integer(2)), Integer(2))), Integer(12))",
        "Mul(Symbol('s0'), Pow(Symbol('s1'), Integer(-1)))",
        "Max(Integer(1), Symbol('s0'))",
        "StrictLessThan(Symbol('s0'), oo)",
        "Float('1.5', precision=53)",
    ],
)
def test_symbolic_expressions_torch_writes_pass(expr: str) -> None:
    assert check_expr(expr, "x") == expr


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("Pow(Integer(3), Integer(100000000))", "power of a literal"),
        ("PowByNatural(Integer(7), Integer(99999999))", "power of a literal"),
        ("Pow(Pow(Symbol('s0'), Integer(8)), Integer(8))", "degree"),
        ("Pow(Symbol('s0'), Integer(1000))", "exponent"),
        ("Pow(Symbol('s0'), Symbol('s1'))", "exponent"),
        ("Integer(99999999999999999999)", "out of range"),
        ("Max(" * 40 + "Symbol('s0')" + ")" * 40, "nested too deeply"),
        ("3**3**3**3", "expected|refused"),
        ("Rational(1, 0)", "zero denominator"),
        ("Symbol('s0').__class__", "trailing|refused"),
        ("Mul(" + ", ".join(["Symbol('s0')"] * 17) + ")", "degree"),
    ],
)
def test_expensive_symbolic_expressions_are_refused(expr: str, reason: str) -> None:
    with pytest.raises(UnsafeModel, match=reason):
        check_expr(expr, "x")


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("torch.ops.aten.relu.default", True),
        ("torch.ops.aten.relu_.default", True),  # in place on self: torch exports these
        ("torch.ops.aten.relu.out", False),
        ("torch.ops.aten.max.dim_max", False),  # an out variant by another name
        ("torch.ops.aten.linear.nonexistent", False),
    ],
)
def test_out_overloads_are_refused(target: str, allowed: bool) -> None:
    assert is_allowed_target(target) is allowed


class MaskOps(torch.nn.Module):
    """What HF transformers' models compute from token ids before attention: a padding mask
    combined with `&`, positions by `cumsum`, `diff`, and rotary tables by `cos`, `sin`."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x > -1.0) & (x < 1.0)
        positions = mask.long().cumsum(-1)
        steps = torch.diff(x, dim=-1, prepend=x[:, :1])
        return self.fc(x * positions + steps + positions.float().cos() * x.sin())


def test_the_mask_and_position_ops_of_language_models_are_read(tmp_path: Path) -> None:
    model = MaskOps().eval()
    program = read_program(export_to(model, tmp_path / "m.pt2", d_in=6))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    ops = {"__and__.Tensor", "cumsum.default", "diff.default", "cos.default", "sin.default"}
    assert {f"aten.{op}" for op in ops} <= targets
    x = torch.randn(5, 6)
    torch.testing.assert_close(program.module()(x), model(x))
