"""What the hostile corpus is built from: the canary, the `Hostile` record, archive rewriting,
and the valid models every hostile archive starts from.

Every pickle in the corpus unpickles to `os.system("touch <canary>")` (`Canary`), and every
code string runs the same command if evaluated: after feeding the corpus to an entry point,
the canary folder must still be empty.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.tiny_models import MLP, export_to


class Canary:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


@dataclass(frozen=True)
class Hostile:
    name: str
    filename: str
    data: bytes
    reason: str  # a regex the refusal's message matches


Edit = Callable[[str, bytes], bytes | None]


def rewrite(src: bytes, edit: Edit, extra: list[tuple[str, bytes]] | None = None) -> bytes:
    """Copy an archive, letting `edit(name, data)` change or drop (None) entries."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in extra or []:
            zout.writestr(name, data)
    return out.getvalue()


def json_edit(suffix: str, change: Callable[[dict], None]) -> Edit:  # type: ignore[type-arg]
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def valid_model(folder: Path) -> bytes:
    torch.manual_seed(0)
    return export_to(MLP(), folder / "valid.pt2").read_bytes()


class _BatchNormAfterExpand(torch.nn.Module):
    """Decomposed, its BatchNorm is `_native_batch_norm_legit_no_training` (no affine)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 1)
        self.bn = torch.nn.BatchNorm1d(4, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 6)
        return self.bn(self.fc(x).expand(-1, 4))  # (N, 4)


def batch_norm_model(folder: Path) -> bytes:
    torch.manual_seed(0)
    model = _BatchNormAfterExpand().eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.randn(4, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program.run_decompositions(), folder / "bn.pt2")
    return (folder / "bn.pt2").read_bytes()


def model_edit(change: Callable[[dict], None]) -> Edit:  # type: ignore[type-arg]
    return json_edit("models/model.json", change)


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()
