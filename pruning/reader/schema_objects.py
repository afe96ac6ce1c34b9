"""The checked program JSON as torch's schema dataclasses (`torch._export.serde.schema`).

Torch's own `_dict_to_dataclass` resolves the type hints of a class for every object it
builds (`typing.get_type_hints`, string annotations evaluated again each time): most of a
read's time went there. `to_schema` builds the same objects, with each class's hints
resolved once per process. `warm_up` imports what a first read needs before one comes.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any

from torch._export.serde import schema
from torch._export.serde.union import _Union


def to_schema(cls: Any, data: Any) -> Any:
    """`data` (JSON) as an instance of `cls`, a schema class or type, as torch's
    `_dict_to_dataclass` builds it: unknown keys of a dataclass are ignored, a union is a
    one-key object.

    Raises:
        AssertionError, TypeError, KeyError: `data` does not fit `cls`.
    """
    cls = _resolve(cls)
    origin = typing.get_origin(cls)
    if origin is Annotated:
        return to_schema(cls.__origin__, data)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(cls):
        if data is None:
            return None
        args = typing.get_args(cls)
        if len(args) != 2:
            raise AssertionError(f"expected 2 type args, got {len(args)}")
        return to_schema(args[0], data)
    if isinstance(cls, type) and _is_union(cls):
        if not isinstance(data, dict) or len(data) != 1:
            raise AssertionError("expected an object with one key")
        ((name, value),) = data.items()
        if not isinstance(name, str):
            raise AssertionError(f"expected str key, got {type(name).__name__}")
        union: Any = cls
        return union.create(**{name: to_schema(_hints(union)[name], value)})
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        hints = _hints(cls)
        fields = {n: to_schema(hints[n], data[n]) for n in _field_names(cls) if n in data}
        return cls(**fields)
    if isinstance(data, list):
        if not data:
            return data
        item = typing.get_args(cls)[0]
        return [to_schema(item, d) for d in data]
    if isinstance(data, dict):
        value_type = typing.get_args(cls)[1]
        return {k: to_schema(value_type, v) for k, v in data.items()}
    if cls is float:
        return float(data)
    return data


def warm_up() -> None:
    """Import torch's deserializer and export machinery and resolve the schema's types, as
    the first read would: for a process that reads later (a standby engine), so that its
    first read costs what the next ones do. Runs no torch operation."""
    import torch.export._unlift  # noqa: F401  (ExportedProgram.module())
    from torch._export.serde import serialize  # noqa: F401
    from torch.fx.experimental import symbolic_shapes

    for value in vars(schema).values():
        if isinstance(value, type) and (dataclasses.is_dataclass(value) or _is_union(value)):
            _hints(value)
    # A symbolic size's first range update names its source line: the list of torch files
    # to skip imports torch's tracing modules (a second of the first read otherwise).
    files = getattr(symbolic_shapes, "uninteresting_files", None)
    if callable(files):
        files()


def _is_union(cls: type) -> bool:
    return issubclass(cls, _Union)


def _resolve(cls: Any) -> Any:
    if isinstance(cls, str):
        found = getattr(schema, cls, None)
        if found is not None:
            return found
        raise AssertionError(f"unresolved class type {cls!r}")
    if isinstance(cls, typing.ForwardRef):
        return _resolve(cls.__forward_arg__)
    return cls


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=vars(schema))


@functools.cache
def _field_names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
