"""A published result set's manifest: how a worker and the reaper tell a complete one.

A published result set is complete when its manifest (`MANIFEST`, written last, inside the
hidden folder, before the rename) lists exactly the files the folder holds, at their sizes:
the worker and the reaper both decide from it whether a published folder is the job's
outcome.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jobs.blob_writer import fsync_path

# Inside a published job folder; a dot-name, so it is never listed as an artifact.
MANIFEST = ".manifest.json"


def write_manifest(folder: Path) -> int:
    """Make every file in `folder` durable, then write the manifest last; returns the bytes
    the folder publishes. Called on the hidden folder, before it is renamed into place."""
    files: dict[str, int] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name == MANIFEST or not entry.is_file():
            continue
        fsync_path(entry)
        files[entry.name] = entry.stat().st_size
    target = folder / MANIFEST
    with target.open("w", encoding="utf-8") as handle:
        json.dump({"files": files}, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(folder)
    return sum(files.values())


def is_complete(folder: Path) -> bool:
    """True when `folder` holds exactly the files its manifest lists, at their sizes."""
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        present = {
            entry.name: entry.stat().st_size
            for entry in folder.iterdir()
            if entry.name != MANIFEST and entry.is_file()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(listed, dict) and listed == present
