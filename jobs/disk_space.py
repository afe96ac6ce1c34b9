"""The data directory's disk: free space, a full disk, and the reserve that lets deletions
work on one.

SQLite must write its journal before it can delete a row, so on a full disk deleting fails
exactly when the user needs it most. The data directory therefore holds a few MiB of
ballast (`.reserve`), given back when a deletion needs room and written again once the disk
has space.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

# Room SQLite needs to delete rows (its WAL grows first) when the disk is otherwise full.
RESERVE_BYTES = 8 * 1024 * 1024
RESERVE_NAME = ".reserve"
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(OSError):
    """The data directory's file system is full (or the user's disk quota is reached)."""


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def free_bytes(root: Path) -> int:
    return shutil.disk_usage(root).free


def ensure_reserve(root: Path) -> bool:
    """Write the ballast file if it is missing and the disk has room; True if present."""
    path = root / RESERVE_NAME
    if path.is_file():
        return True
    # Only with room to spare: taking back the last free bytes would fail the next write.
    if free_bytes(root) < 4 * RESERVE_BYTES:
        return False
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            # Real blocks, not a sparse file: only allocated space can be given back.
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
    except OSError:
        path.unlink(missing_ok=True)
        return False
    return True


def release_reserve(root: Path) -> bool:
    """Free the ballast (the disk is full and a deletion needs room); True if it was there."""
    try:
        (root / RESERVE_NAME).unlink()
    except FileNotFoundError:
        return False
    return True
