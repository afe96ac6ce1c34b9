"""Datasets that upload and `deadweight prune` must refuse: pickled object arrays, non-finite
values, malformed safetensors headers. (Attacks on the validator's memory and time are in
`tests/hostile/costly_datasets.py`.)"""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np

from tests.hostile.archives import Canary, Hostile


def hostile_datasets(canary: Path) -> list[Hostile]:
    """Datasets that upload and `deadweight prune` must refuse."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)

    def npz(**arrays: object) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    objects = np.empty(8, dtype=object)
    objects[:] = [Canary(canary / "object-array")] * 8

    def safetensors(header: bytes, body: bytes = b"", length: int | None = None) -> bytes:
        size = len(header) if length is None else length
        return struct.pack("<Q", size) + header + body

    good_header = json.dumps(
        {"x": {"dtype": "F32", "shape": [8, 6], "data_offsets": [0, 192]}}
    ).encode()
    nan_x = x.copy()
    nan_x[3, 2] = np.nan
    return [
        Hostile("npz object array", "d.npz", npz(x=x, y=objects), "object|pickle"),
        Hostile(
            "plain pickle named .npz",
            "d.npz",
            pickle.dumps(Canary(canary / "p")),
            "not a dataset format",
        ),
        Hostile("npz with NaN", "d.npz", npz(x=nan_x), "NaN|finite"),
        Hostile("npz with inf", "d.npz", npz(x=np.full((8, 6), np.inf, np.float32)), "finite"),
        Hostile("safetensors bad JSON", "d.safetensors", safetensors(b"{not json"), "header"),
        Hostile(
            "safetensors header longer than the file",
            "d.safetensors",
            safetensors(good_header, length=10**9),
            "header",
        ),
        Hostile(
            "safetensors data past the file",
            "d.safetensors",
            safetensors(good_header, bytes(16)),
            "offset|size|past|bytes",
        ),
        Hostile(
            "safetensors code in dtype",
            "d.safetensors",
            safetensors(
                json.dumps(
                    {"x": {"dtype": "__import__('os')", "shape": [8, 6], "data_offsets": [0, 192]}}
                ).encode(),
                bytes(192),
            ),
            "dtype",
        ),
        Hostile("csv with inf", "d.csv", b"a,b\n1,2\ninf,3\n", "finite|inf"),
    ]
