"""A published result set's manifest: how a worker and the reaper tell a complete one.

A published result set is complete when its manifest (`MANIFEST`, written last, inside the
hidden folder, before the rename) lists exactly the files the folder holds, at their sizes:
the worker and the reaper both decide from it whether a published folder is the job's
outcome.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from jobs.blob_writer import fsync_path

# Inside a published job folder; a dot-name, so it is never listed as an artifact.
MANIFEST = ".manifest.json"


def write_manifest(folder: Path) -> int:
    """Make every file in `folder` durable, then write the manifest last; returns the bytes
    the folder publishes. Called on the hidden folder, before it is renamed into place."""
    files = publishable_files(folder)
    for name in files:
        fsync_path(folder / name)
    target = folder / MANIFEST
    with target.open("w", encoding="utf-8") as handle:
        json.dump({"files": files}, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(folder)
    return sum(files.values())


def publishable_files(folder: Path) -> dict[str, int]:
    """The files a result set publishes, with their sizes: regular files not named with a
    dot. A dot-name is never served (nor a valid name in a remote manifest,
    `jobs.remote_manifest`), and a link is never followed: it could point anywhere on the
    worker's disk, and its target would be published as the job's file."""
    files: dict[str, int] = {}
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                files[entry.name] = info.st_size
    return files


def listed_files(folder: Path) -> dict[str, int]:
    """The files a sealed folder's manifest lists, with their sizes (what a remote store
    uploads, `jobs.s3_blobs`).

    Raises:
        OSError / ValueError: the folder has no readable manifest.
    """
    listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    if not isinstance(listed, dict):
        raise ValueError(f"{folder / MANIFEST}: no file list")
    return {str(name): int(size) for name, size in listed.items()}


def is_complete(folder: Path) -> bool:
    """True when `folder` holds exactly the files its manifest lists, at their sizes."""
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        present = publishable_files(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(listed, dict):
        return False
    # A manifest written before dot-names were left out may list some; they were never
    # served, so they do not decide whether the set is whole.
    return {name: size for name, size in listed.items() if not name.startswith(".")} == present
