"""A download written to disk as it arrives, and renamed into place only once complete, so a
broken transfer never leaves a file that looks whole."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def download_target(path: str | Path, name: str) -> Path:
    """`path` itself, or `path/name` when `path` is a folder (or ends with a separator)."""
    target = Path(path)
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        return target / name
    return target


@contextlib.contextmanager
def partial_file(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside `target`, renamed onto it when the block ends without error,
    removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    # os.open, not mkstemp: the file gets the umask's permissions, as any file the user
    # writes (mkstemp's are 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
