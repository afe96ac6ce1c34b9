"""Feeding datasets to a model: batches of NumPy arrays become model inputs on a device.

The engine reads data through the small `BatchSource` protocol; `jobs.datasets` implements it
for files (npz, safetensors, csv) and `ArrayData` for arrays already in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from pruning.errors import InvalidDataset
from pruning.graph import InputSpec


class BatchSource(Protocol):
    """Anything that yields (x, y-or-None) NumPy batches, x as float32 (B, *sample_shape)."""

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]: ...


@dataclass
class ArrayData:
    """In-memory data: `x` (N, ...) and optional labels/targets `y` (N, ...)."""

    x: np.ndarray
    y: np.ndarray | None = None

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for start in range(0, len(self.x), batch_size):
            stop = start + batch_size
            yield (
                np.ascontiguousarray(self.x[start:stop], dtype=np.float32),
                None if self.y is None else self.y[start:stop],
            )


@dataclass(frozen=True)
class Batch:
    """One batch as the model takes it: tensors on the run's device, made by `Feeder` from a
    `BatchSource`'s NumPy arrays."""

    inputs: tuple[torch.Tensor, ...]
    valid: int  # rows that are data; the rest pads a static batch dimension
    y: torch.Tensor | None


class Feeder:
    """Turns NumPy batches into model inputs that fit the program's declared input."""

    def __init__(self, inputs: list[InputSpec], device: torch.device, batch_size: int):
        if len(inputs) != 1:
            raise InvalidDataset(
                f"the model takes {len(inputs)} inputs; datasets feed models with exactly one"
            )
        self.spec = inputs[0]
        self.device = device
        batch_dim = self.spec.shape[0] if self.spec.shape else None
        # A model exported with a fixed batch size gets exactly that many rows per call.
        self.static_batch = batch_dim if isinstance(batch_dim, int) else None
        self.batch_size = self.static_batch or batch_size
        self.dtype = getattr(torch, self.spec.dtype, torch.float32)

    def check_shape(self, sample_shape: tuple[int, ...]) -> None:
        expected = self.spec.shape[1:]
        if len(expected) != len(sample_shape) or any(
            e is not None and e != s for e, s in zip(expected, sample_shape, strict=False)
        ):
            shown = [e if e is not None else "any" for e in expected]
            raise InvalidDataset(
                f"dataset samples have shape {list(sample_shape)} but the model expects {shown}"
            )

    def __call__(self, source: BatchSource) -> Iterator[Batch]:
        for x, y in source.batches(self.batch_size):
            self.check_shape(tuple(x.shape[1:]))
            valid = x.shape[0]
            t = torch.from_numpy(np.ascontiguousarray(x))
            if self.static_batch is not None and valid < self.static_batch:
                pad = torch.zeros((self.static_batch - valid, *t.shape[1:]), dtype=t.dtype)
                t = torch.cat([t, pad])
            yt = None if y is None else torch.from_numpy(np.asarray(y))
            yield Batch(inputs=(t.to(self.device, self.dtype),), valid=valid, y=yt)

    def example(self) -> tuple[torch.Tensor, ...]:
        """Inputs for re-export: the declared shape, with batch 2 where it is dynamic."""
        shape = [2 if s is None else s for s in self.spec.shape]
        return (torch.zeros(shape, dtype=self.dtype),)


@dataclass(frozen=True)
class DataInput:
    """A dataset as a run sees it: its batches, how many samples, whether it has labels."""

    source: BatchSource
    samples: int
    has_labels: bool

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray | None = None) -> DataInput:
        """Arrays in memory: `x` (N, ...) and optional labels or targets `y` (N, ...)."""
        return cls(ArrayData(x, y), len(x), y is not None)
