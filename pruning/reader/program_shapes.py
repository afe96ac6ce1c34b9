"""Shapes checked before any real kernel runs: the program is run once on fake tensors.

torch's deserializer trusts the shapes a file declares, and some CPU kernels trust their
arguments: `_native_batch_norm_legit_no_training` given running statistics shorter than
the input's channels reads past them and kills the process (SIGSEGV). So the reader runs
the whole graph under `FakeTensorMode`, whose meta kernels check arguments and raise, with
the stored weights' real shapes and the inputs' declared shapes (symbolic sizes at their
hints); the few ops whose meta kernels check less than their CPU kernels rely on are
checked here explicitly. Each op's result must have the shape and dtype the file declares
for it, since the channel analysis reads those. Any failure is a refusal; nothing real runs.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import guarding_hint_or_throw

from pruning.errors import UnsafeModel

_INT_LIMIT = 2**62  # symbolic-size arithmetic stays in int64, as torch's does
_MAX_EXPONENT = 64

aten = torch.ops.aten
# CPU kernels that index their per-channel arguments by the input's channel without
# checking their length, and whose meta kernels do not check it either.
_UNCHECKED_BATCH_NORM_KERNELS = {
    aten._native_batch_norm_legit_no_training.default,
    aten._native_batch_norm_legit.default,
    aten._native_batch_norm_legit.no_stats,
    aten._native_batch_norm_legit_functional.default,
    aten.native_batch_norm.default,
}
# Attention kernels read `value` at every key position without checking their counts match.
_ATTENTION = {
    aten.scaled_dot_product_attention.default,
    aten._scaled_dot_product_flash_attention_for_cpu.default,
    aten._scaled_dot_product_efficient_attention.default,
}


def check_shapes(program: torch.export.ExportedProgram) -> None:
    """Run `program` on fake tensors and compare every result with what the file declares.

    Raises:
        UnsafeModel: a stored tensor differs from its declaration, an op's arguments are
            inconsistent, or an op's result differs from its declared shape.
    """
    mode = FakeTensorMode(allow_fallback_kernels=False)
    args = _placeholder_values(program, mode)
    with _quiet(), mode, torch.no_grad():
        _FakeRun(program.graph_module).run(*args)


def _placeholder_values(program: torch.export.ExportedProgram, mode: FakeTensorMode) -> list[Any]:
    sig = program.graph_signature
    stored_names = {
        **sig.inputs_to_parameters,
        **sig.inputs_to_buffers,
        **sig.inputs_to_lifted_tensor_constants,
    }
    stored = {**program.constants, **program.state_dict}
    values: list[Any] = []
    for node in program.graph_module.graph.find_nodes(op="placeholder"):
        declared = node.meta.get("val")
        if not isinstance(declared, torch.Tensor):
            raise UnsafeModel(f"input {node.name}: model inputs must be tensors")
        fqn = stored_names.get(node.name)
        if fqn is None:  # a user input: contiguous, as the engine feeds it
            with mode:
                values.append(torch.empty(_hinted(declared.shape, node.name), dtype=declared.dtype))
            continue
        real = stored.get(fqn)
        if not isinstance(real, torch.Tensor):
            raise UnsafeModel(f"{fqn}: the program uses it but the archive stores no tensor")
        if list(real.shape) != _hinted(declared.shape, fqn) or real.dtype != declared.dtype:
            raise UnsafeModel(
                f"{fqn}: the program declares {list(declared.shape)} {declared.dtype} but "
                f"the archive stores {list(real.shape)} {real.dtype}"
            )
        values.append(mode.from_tensor(real))
    return values


def _hinted(shape: Any, where: str) -> list[int]:
    try:
        return [int(guarding_hint_or_throw(s)) for s in shape]
    except Exception as exc:  # an unbacked or malformed symbol: no size to check against
        raise UnsafeModel(f"{where}: a symbolic size has no usable hint") from exc


class _FakeRun(fx.Interpreter):
    """Runs each node on fake tensors, checks its arguments and its declared result."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.extra_traceback = False  # keep our refusal's message as it is

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except UnsafeModel:
            raise
        except Exception as exc:  # meta kernels raise many types for bad arguments
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UnsafeModel(
                f"node {n.name} ({n.target}): inconsistent arguments: {first[:300]}"
            ) from exc
        if n.op == "call_function" and "val" in n.meta:
            _compare(n.meta["val"], result, n)
        return result

    def call_function(self, target: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if target in _UNCHECKED_BATCH_NORM_KERNELS:
            _check_batch_norm(args)
        elif target in _ATTENTION:
            _check_attention(args, kwargs)
        if target is operator.pow and (not isinstance(args[1], int) or args[1] > _MAX_EXPONENT):
            raise UnsafeModel(f"a size is raised to the power {str(args[1])[:20]}")
        result = super().call_function(target, args, kwargs)
        if isinstance(result, int) and abs(result) > _INT_LIMIT:
            raise UnsafeModel(f"a size computed by the program overflows: {str(result)[:40]}")
        return result


def _check_batch_norm(args: Any) -> None:
    x, per_channel = args[0], [a for a in args[1:5] if isinstance(a, torch.Tensor)]
    if x.dim() < 2:
        raise UnsafeModel("batch norm needs an input with a channel dimension")
    for t in per_channel:
        if t.dim() != 1 or t.shape[0] != x.shape[1]:
            raise UnsafeModel(
                f"batch norm over {x.shape[1]} channels given a per-channel tensor of shape "
                f"{list(t.shape)}"
            )


def _check_attention(args: Any, kwargs: dict[str, Any]) -> None:
    q, k, v = args[:3]
    if q.dim() < 2 or q.dim() != k.dim() or k.dim() != v.dim():
        raise UnsafeModel("attention needs query, key and value of the same rank")
    if k.shape[-2] != v.shape[-2] or q.shape[-1] != k.shape[-1]:
        raise UnsafeModel(
            f"attention: key {list(k.shape)} and value {list(v.shape)} or query "
            f"{list(q.shape)} disagree"
        )
    if k.shape[:-2] != v.shape[:-2] or not _heads_fit(q, k, kwargs):
        raise UnsafeModel("attention: query, key and value disagree in their batch dimensions")
    mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
    if isinstance(mask, torch.Tensor):
        try:
            torch.broadcast_shapes(mask.shape, (*q.shape[:-1], k.shape[-2]))  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            raise UnsafeModel(f"attention: mask {list(mask.shape)} does not fit") from exc


def _heads_fit(q: torch.Tensor, k: torch.Tensor, kwargs: dict[str, Any]) -> bool:
    """Equal batch dims, or grouped-query attention (`enable_gqa`): the query heads
    (dim -3) a whole multiple of the key/value heads, the other batch dims equal."""
    if q.shape[:-2] == k.shape[:-2]:
        return True
    if not kwargs.get("enable_gqa") or q.dim() < 3:
        return False
    hq, hk = q.shape[-3], k.shape[-3]
    return q.shape[:-3] == k.shape[:-3] and hk > 0 and hq % hk == 0


def _compare(declared: Any, actual: Any, n: fx.Node) -> None:
    """The file's declared result for `n` (shape, dtype, sizes) must be what it computes."""
    if isinstance(declared, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            raise _mismatch(n, declared, actual)
        if _hinted(declared.shape, n.name) != list(actual.shape) or declared.dtype != actual.dtype:
            raise _mismatch(n, list(declared.shape), list(actual.shape))
    elif isinstance(declared, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(declared):
            raise _mismatch(n, declared, actual)
        for d, a in zip(declared, actual, strict=True):
            _compare(d, a, n)
    elif (
        isinstance(declared, (int, torch.SymInt))
        and not isinstance(declared, bool)
        and _hinted([declared], n.name) != [actual]
    ):
        raise _mismatch(n, declared, actual)


def _mismatch(n: fx.Node, declared: Any, actual: Any) -> UnsafeModel:
    return UnsafeModel(
        f"node {n.name} ({n.target}): the file declares {str(declared)[:120]} but its "
        f"arguments give {str(actual)[:120]}"
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """FakeTensorMode logs every failing meta kernel with a traceback; a refusal says enough."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
