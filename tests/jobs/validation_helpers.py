"""Helpers shared by the validation tests: the server settings they validate under."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.settings import Settings
from tests.hostile.raw_zips import MIB

GIB = 1024 * MIB


def validation_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings whose limits the tests rely on, with `overrides` on top."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "max_upload_bytes": 64 * MIB,  # decoded arrays: at most 512 MiB
        "validation_memory_bytes": GIB,
        "validation_seconds": 30,
    }
    return Settings(**(values | overrides))
