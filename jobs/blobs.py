"""Files on disk: uploads by content (sha256), and each job's published artifacts.

Layout under the root (the data directory):
    blobs/<sha[:2]>/<sha>   an upload, named by the sha256 of its bytes
    tmp/                    uploads being written, each locked by its writer (an unlocked
                            one is a dead process's leftover); renamed into blobs/
    jobs/<job_id>/          a job's artifacts; folders starting with '.' are unfinished, and
                            `jobs/<id>/.manifest.json`, written last, marks a complete set
    .reserve                ballast, released so deletions work on a full disk (disk_space)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from jobs.disk_space import DiskFull, is_disk_full

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
_COPY_CHUNK = 1024 * 1024
UPLOAD_PREFIX = "upload-"
_NEW_PREFIX = ".new-upload-"  # before its lock is taken; swept only by age

_MEDIA_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".png": "image/png",
    # A .pt2 archive is a zip file.
    ".pt2": "application/zip",
}


class BlobTooLarge(ValueError):
    """An upload grew past the limit given to `begin_upload`."""


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    bytes: int
    media_type: str


class BlobWriter:
    """An upload in progress: hashed while written, visible under its sha256 only on commit.

    Use as a context manager; leaving the block without `commit()` removes the temp file.
    """

    def __init__(self, store: BlobStore, max_bytes: int | None) -> None:
        self._store = store
        self._max_bytes = max_bytes
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Inside the root, so the final rename stays on one filesystem and is atomic.
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix=_NEW_PREFIX)
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
        target = self._store.path(sha256)
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


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.jobs_dir = self.root / "jobs"

    # -- uploads --------------------------------------------------------------
    def begin_upload(self, max_bytes: int | None = None) -> BlobWriter:
        """Start writing an upload; `max_bytes` makes `write` refuse to grow past it."""
        return BlobWriter(self, max_bytes)

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists).

        Raises:
            ValueError: `sha256` is not 64 lowercase hex digits (it could name any path).
        """
        if not _SHA256_RE.fullmatch(sha256):
            raise ValueError("not a sha256 digest (64 lowercase hex digits)")
        return self.blobs_dir / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        """Remove a blob; removing one that is gone already is not an error."""
        self.path(sha256).unlink(missing_ok=True)

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy a local file in; returns (sha256, size)."""
        with self.begin_upload() as writer, source.open("rb") as handle:
            while chunk := handle.read(_COPY_CHUNK):
                writer.write(chunk)
            return writer.commit()

    # -- job files ------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The folder of a job's files (not created here).

        Raises:
            ValueError: `job_id` is not 32 lowercase hex digits.
        """
        if not _JOB_ID_RE.fullmatch(job_id):
            raise ValueError("not a job ID (32 lowercase hex digits)")
        return self.jobs_dir / job_id

    def remove_job_dir(self, job_id: str) -> None:
        """Remove a job's published folder and every hidden folder its attempts left
        (`.<id>.attempt-<n>` staging, `.<id>.attempt-<n>.work`); safe when none exist."""
        folder = self.job_dir(job_id)
        shutil.rmtree(folder, ignore_errors=True)
        for hidden in self.jobs_dir.glob(f".{job_id}.attempt-*"):
            shutil.rmtree(hidden, ignore_errors=True)

    def list_artifacts(self, job_id: str) -> list[ArtifactInfo]:
        """The job's published files, sorted by name; empty if it has none yet."""
        folder = self.job_dir(job_id)
        if not folder.is_dir():
            return []
        found = []
        for entry in os.scandir(folder):
            # Dot-names are files still being written (renamed into place when done);
            # links and folders are never served, so nothing can point outside the folder.
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            media_type = _MEDIA_TYPES.get(Path(entry.name).suffix.lower())
            found.append(
                ArtifactInfo(
                    name=entry.name,
                    bytes=entry.stat(follow_symlinks=False).st_size,
                    media_type=media_type or "application/octet-stream",
                )
            )
        return sorted(found, key=lambda info: info.name)

    def artifact_path(self, job_id: str, name: str) -> Path | None:
        """The path of a listed artifact, or None.

        `name` comes from a URL: it is compared with the listing, never joined onto a path
        unchecked, so `../x`, `a/b` or an absolute path can only ever miss.
        """
        for info in self.list_artifacts(job_id):
            if info.name == name:
                return self.job_dir(job_id) / info.name
        return None


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


def is_blob_name(name: str) -> bool:
    return bool(_SHA256_RE.fullmatch(name))


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
