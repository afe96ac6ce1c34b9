"""Writing an upload: a locked temporary file, hashed as it grows, renamed into place durably.

An upload is written under `tmp/` and becomes visible under its sha256 (`blobs/`) only once
its bytes are on disk (`commit`). While it is written, its writer holds an exclusive lock on
the file; the sweep (`jobs.leftovers`, through `remove_if_abandoned`) removes only files
nobody holds, so a slow client's upload survives however old it gets, and a killed process's
leftover goes. The lock protocol is defined here, on both sides.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from jobs.disk_space import DiskFull, is_disk_full

UPLOAD_PREFIX = "upload-"
_NEW_PREFIX = ".new-upload-"  # before its lock is taken; swept only by age
# A committed upload's local copy where the blob itself lives elsewhere (S3): read by the
# API's validation, then removed (`BlobStore.discard_local_copy`); swept only by age.
SPOOL_PREFIX = "spool-"
# (temporary file, sha256): puts the finished bytes where the store keeps them (S3).
Place = Callable[[Path, str], None]


class BlobTooLarge(ValueError):
    """An upload grew past the limit given to `begin_upload`."""


class BlobWriter:
    """An upload in progress: hashed while written, visible under its sha256 only on commit.

    Use as a context manager; leaving the block without `commit()` removes the temp file.
    With `remote`, committing hands the bytes to it instead of renaming the file into the
    local store, and the file stays on disk as the upload's local copy (`local_path`).
    """

    def __init__(
        self,
        tmp_dir: Path,
        destination: Callable[[str], Path],
        max_bytes: int | None,
        remote: Place | None = None,
    ) -> None:
        # `destination` names the committed file by its hash (`BlobStore.path`).
        self._destination = destination
        self._remote = remote
        self._max_bytes = max_bytes
        self._local: Path | None = None
        tmp_dir.mkdir(parents=True, exist_ok=True)
        # Inside the root, so the final rename stays on one filesystem and is atomic.
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=_NEW_PREFIX)
        # Locked until the file is renamed or removed: the sweep leaves a locked file alone,
        # whatever its age, host or process (a slow client's upload is still alive). It is
        # locked before it takes the name the sweep looks at, so an unlocked `upload-*`
        # file always belongs to a writer that died.
        self._lock = _locked(Path(name))
        self._temp = Path(name.replace(_NEW_PREFIX, UPLOAD_PREFIX, 1))
        os.rename(name, self._temp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def local_path(self) -> Path:
        """Where this process reads the committed bytes: the blob itself, or (with `remote`)
        the spool copy the caller discards once done with it."""
        if self._local is None:
            raise ValueError("the upload is not committed")
        return self._local

    @property
    def sha256(self) -> str:
        """The hash of the bytes written so far (the blob's name once committed)."""
        return self._hash.hexdigest()

    def write(self, chunk: bytes) -> None:
        """Append a chunk. Raises BlobTooLarge (after aborting) past the writer's limit."""
        if self._file is None:
            raise ValueError("the upload is already committed or aborted")
        if self._max_bytes is not None and self._size + len(chunk) > self._max_bytes:
            self.abort()
            raise BlobTooLarge(f"the upload exceeds {self._max_bytes} bytes")
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.abort()
            raise _full_or(exc) from exc
        self._hash.update(chunk)
        self._size += len(chunk)

    def commit(self) -> tuple[str, int]:
        """Make the upload durable under its hash; returns (sha256, size)."""
        if self._file is None:
            raise ValueError("the upload is already committed or aborted")
        if self._remote is not None:
            return self._commit_remote(self._remote)
        try:
            self._file.flush()
            # Durable before it becomes visible: a crash must not leave a blob whose name
            # promises bytes that never reached the disk.
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.abort()
            raise _full_or(exc) from exc
        self._file.close()
        self._file = None
        sha256 = self._hash.hexdigest()
        target = self._destination(sha256)
        try:
            if target.exists():
                # Same name, same bytes: the copy already there is as good as ours.
                self._temp.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._temp, target)
                fsync_path(target.parent)  # the rename itself, or a crash can forget it
        finally:
            self._unlock()
        self._local = target
        return sha256, self._size

    def _commit_remote(self, remote: Place) -> tuple[str, int]:
        # No fsync: the store keeps the bytes; the file is only read back on this machine.
        assert self._file is not None
        try:
            self._file.close()
            self._file = None
            sha256 = self._hash.hexdigest()
            remote(self._temp, sha256)
            spool = self._temp.with_name(self._temp.name.replace(UPLOAD_PREFIX, SPOOL_PREFIX, 1))
            os.rename(self._temp, spool)
        except OSError as exc:
            self.abort()
            raise _full_or(exc) from exc
        except BaseException:
            self.abort()
            raise
        self._unlock()
        self._local = spool
        return sha256, self._size

    def abort(self) -> None:
        """Discard the upload; safe to call twice or after commit."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def _locked(path: Path) -> int | None:
    """A descriptor of the file holding an exclusive lock on it; None where the file system
    has no locks (the sweep then leaves the file alone)."""
    lock = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return None
    return lock


def _full_or(exc: OSError) -> OSError:
    return DiskFull(exc.errno, "the data directory's disk is full") if is_disk_full(exc) else exc


def remove_if_abandoned(path: Path) -> bool:
    """Remove a temporary upload file unless a live writer holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its writer is alive (or this file system has no locks: leave it)
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """Make a file's bytes, or a folder's entries (a rename), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
