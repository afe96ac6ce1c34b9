from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny_models import export_to
from tests.worker.world import Net, World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "data")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return export_to(Net(), tmp_path / "net.pt2", d_in=5)
