"""Weights and constants as raw bytes: each payload entry becomes a flat tensor, and every
view a config declares on it (sizes, strides, offset) is checked to lie inside it.

No payload is unpickled: an entry is read as bytes and reinterpreted with `torch.frombuffer`.
Tied weights (two names, one payload, one view) share their tensor; views that claim more
elements than their payload stores (expanded buffers) are allowed only up to
`ArchiveLimits.max_expanded_elements` in all.
"""

from __future__ import annotations

import math
import re
import zipfile
from typing import Any

import torch

from pruning.errors import UnsafeModel
from pruning.reader.archive import ArchiveLimits, Entries, read_entry
from pruning.reader.program_fields import dtype_from_code


class Payloads:
    """Reads payload entries once each and checks what the views on them claim."""

    def __init__(self, zf: zipfile.ZipFile, entries: Entries, limits: ArchiveLimits) -> None:
        self.zf = zf
        self.entries = entries
        self.limits = limits
        self.flat: dict[str, torch.Tensor] = {}  # entry -> flat payload; shared by tied views
        self.views: dict[str, set[tuple[Any, ...]]] = {}  # entry -> distinct views on it
        self.claimed: dict[str, int] = {}  # entry -> elements its distinct views claim
        self.expanded = 0  # elements claimed beyond what payloads hold, all entries

    def read(self, config: dict[str, Any], folder: str) -> dict[str, torch.Tensor]:
        return {fqn: self.tensor(folder, fqn, meta) for fqn, meta in config.items()}

    def tensor(self, folder: str, fqn: str, meta: dict[str, Any]) -> torch.Tensor:
        path_name = meta.get("path_name")
        if not isinstance(path_name, str) or folder + path_name not in self.entries:
            raise UnsafeModel(f"{fqn}: payload {str(path_name)[:100]!r} is not in the archive")
        if not re.fullmatch(r"(weight|tensor)_[0-9]+", path_name):
            raise UnsafeModel(
                f"{fqn}: refused payload name {path_name!r} (custom or opaque object)"
            )
        tmeta = meta["tensor_meta"]
        dtype = dtype_from_code(tmeta["dtype"], fqn)
        sizes = [s["as_int"] for s in tmeta["sizes"]]
        strides = [s["as_int"] for s in tmeta["strides"]]
        offset = tmeta["storage_offset"]["as_int"]
        flat = self.payload(folder + path_name, fqn, dtype)
        self.claim(folder + path_name, fqn, flat.numel(), sizes, strides, offset)
        tensor = torch.as_strided(flat, sizes, strides, offset)
        if meta.get("is_param"):
            # Only floating-point tensors can require gradients; torch raises for others.
            grad = tmeta.get("requires_grad", False) is True and dtype.is_floating_point
            return torch.nn.Parameter(tensor, requires_grad=grad)
        return tensor

    def payload(self, name: str, fqn: str, dtype: torch.dtype) -> torch.Tensor:
        flat = self.flat.get(name)
        if flat is None:
            info = self.entries[name]
            element = torch.empty((), dtype=dtype).element_size()
            if info.file_size % element:
                raise UnsafeModel(
                    f"{fqn}: payload size {info.file_size} is not a multiple of {element}"
                )
            raw = bytearray(read_entry(self.zf, info, info.file_size))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self.flat[name] = flat
        elif flat.dtype != dtype:
            raise UnsafeModel(f"{fqn}: payload {name} is shared with a different dtype")
        return flat

    def claim(
        self, name: str, fqn: str, stored: int, sizes: list[int], strides: list[int], offset: int
    ) -> None:
        """A view must lie inside its payload, and claim no more elements than it holds
        (beyond a small allowance for expanded buffers)."""
        numel = math.prod(sizes)
        if numel == 0:
            return
        # The highest element the view touches must lie inside the payload.
        last = offset + sum(
            (size - 1) * stride for size, stride in zip(sizes, strides, strict=True)
        )
        if last >= stored:
            raise UnsafeModel(f"{fqn}: sizes/strides/offset reach past the payload")
        views = self.views.setdefault(name, set())
        key = (tuple(sizes), tuple(strides), offset)
        if key in views:  # a tied weight: the same tensor twice
            return
        views.add(key)
        before = max(self.claimed.get(name, 0) - stored, 0)
        self.claimed[name] = self.claimed.get(name, 0) + numel
        self.expanded += max(self.claimed[name] - stored, 0) - before
        if self.expanded > self.limits.max_expanded_elements:
            raise UnsafeModel(
                f"{fqn}: declares {numel} elements over a payload of {stored}: views may "
                f"claim at most {self.limits.max_expanded_elements} elements more than "
                "the archive stores (save the model with torch.export.save)"
            )
