"""Files on disk: uploads by content (sha256), and each job's published artifacts.

Layout under the root (the data directory):
    blobs/<sha[:2]>/<sha>   an upload, named by the sha256 of its bytes
    tmp/                    uploads being written, each locked by its writer (an unlocked
                            one is a dead process's leftover); renamed into blobs/
                            (`jobs.blob_writer`)
    jobs/<job_id>/          a job's artifacts; `jobs/<id>/.manifest.json`, written last,
                            marks a complete set
    jobs/.<job_id>.attempt-<n>/       attempt n's files, renamed to `jobs/<job_id>/` when
                                      complete (`worker.publish`)
    jobs/.<job_id>.attempt-<n>.work/  attempt n's engine's working directory
    .reserve                ballast, released so deletions work on a full disk (disk_space)

With `DEADWEIGHT_BLOB_URL=s3://...` the blobs and published result sets live in a bucket
instead (`jobs.s3_blobs.S3BlobStore`, a subclass), and the data directory is each process's
working area only: tmp/ spools uploads, the attempt folders stage a job's files and hold its
inputs. Callers use the methods below that say "whichever the store" and never assume that a
blob or a published file is a path.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobs.blob_writer import BlobWriter
from jobs.manifest import is_complete

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
_COPY_CHUNK = 1024 * 1024
# What `_attempt_name` writes, with or without the working directory's `.work`.
_ATTEMPT_DIR_RE = re.compile(r"\.([0-9a-f]{32})\.attempt-(\d+)(?:\.work)?")

_MEDIA_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".png": "image/png",
    # report.html: served with a policy that lets it run no script (service.artifact_responses)
    ".html": "text/html; charset=utf-8",
    # A .pt2 archive is a zip file.
    ".pt2": "application/zip",
}


@dataclass(frozen=True)
class AttemptDirs:
    """One attempt's folders: its files (`staging`) and its engine's working directory."""

    staging: Path
    work: Path


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    bytes: int
    media_type: str


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.jobs_dir = self.root / "jobs"

    # -- uploads --------------------------------------------------------------
    def begin_upload(self, max_bytes: int | None = None) -> BlobWriter:
        """Start writing an upload; `max_bytes` makes `write` refuse to grow past it."""
        return BlobWriter(self.tmp_dir, self.path, max_bytes)

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
        """Copy a local file in; returns (sha256, size). A public helper for files already on
        disk (tests seed stores with it); the service streams uploads via `begin_upload`."""
        with self.begin_upload() as writer, source.open("rb") as handle:
            while chunk := handle.read(_COPY_CHUNK):
                writer.write(chunk)
            committed = writer.commit()
        self.discard_local_copy(writer.local_path)
        return committed

    # -- job files ------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The folder of a job's files (not created here).

        Raises:
            ValueError: `job_id` is not 32 lowercase hex digits.
        """
        return self.jobs_dir / _checked_job_id(job_id)

    def attempt_dirs(self, job_id: str, attempt: int) -> AttemptDirs:
        """Attempt `attempt`'s folders (not created here).

        Raises:
            ValueError: `job_id` is not 32 lowercase hex digits.
        """
        staging = self.jobs_dir / _attempt_name(_checked_job_id(job_id), attempt)
        return AttemptDirs(staging=staging, work=staging.with_name(f"{staging.name}.work"))

    def attempt_dirs_of(self, job_id: str) -> list[Path]:
        """Every folder any attempt of the job left (staging and working directories)."""
        return sorted(self.jobs_dir.glob(_attempt_name(_checked_job_id(job_id), "*")))

    def all_attempt_dirs(self) -> Iterator[tuple[str, int, Path]]:
        """(job ID, attempt, folder) for every attempt folder of any job."""
        if not self.jobs_dir.is_dir():
            return
        for entry in self.jobs_dir.iterdir():
            match = _ATTEMPT_DIR_RE.fullmatch(entry.name)
            if match:
                yield match.group(1), int(match.group(2)), entry

    def remove_job_dir(self, job_id: str) -> None:
        """Remove a job's published folder and every folder its attempts left; safe when
        none exist."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        for hidden in self.attempt_dirs_of(job_id):
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
            found.append(
                ArtifactInfo(
                    name=entry.name,
                    bytes=entry.stat(follow_symlinks=False).st_size,
                    media_type=media_type(entry.name),
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

    # -- whichever the store (`jobs.s3_blobs` overrides these) ----------------------------
    def discard_local_copy(self, path: Path) -> None:
        """Done reading an upload's local copy (`BlobWriter.local_path`). Here that is the
        blob itself, which stays (its holds and records decide when it goes)."""

    def fetch(self, sha256: str, into: Path, name: str) -> Path:
        """A path on this machine holding the blob's bytes, for a job or an inspection to
        read; `into` is the attempt's own folder, where a remote store downloads it. Here:
        the blob itself. `name` (the upload's) is for messages.
        """
        return self.path(sha256)

    def blobs_older_than(self, min_age_seconds: float) -> list[str]:
        """Blob names older than that: the job store then says which ones nothing refers to."""
        if not self.blobs_dir.is_dir():
            return []
        cutoff = time.time() - min_age_seconds
        found = []
        for shard in os.scandir(self.blobs_dir):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                if is_blob_name(entry.name) and entry.stat().st_mtime < cutoff:
                    found.append(entry.name)
        return found

    def clear_unpublished(self, job_id: str) -> bool:
        """Remove what earlier attempts of the job left; True when one of them published a
        complete result set, which stays: it is the job's outcome."""
        for folder in self.attempt_dirs_of(job_id):
            shutil.rmtree(folder, ignore_errors=True)
        final = self.job_dir(job_id)
        if final.exists():
            if is_complete(final):
                return True
            shutil.rmtree(final, ignore_errors=True)  # never published whole: not an outcome
        return False

    def publish_results(self, job_id: str, attempt: int, staging: Path) -> bool:
        """Make a sealed staging folder (`jobs.manifest.write_manifest`) the job's result set
        in one step: a rename, never a merge. False when another attempt's complete set is
        already published (that set stays the outcome; `staging` is left to the caller).

        Raises:
            OSError: the rename failed, and no complete set is in place.
        """
        final = self.job_dir(job_id)
        try:
            staging.rename(final)
        except OSError:
            if not is_complete(final):
                raise
            return False
        return True

    def is_published(self, job_id: str) -> bool:
        """True when the job has a complete published result set."""
        return is_complete(self.job_dir(job_id))

    def read_artifact(self, job_id: str, name: str, max_bytes: int) -> bytes | None:
        """A published file's bytes; None when it is not published or is over `max_bytes`."""
        path = self.artifact_path(job_id, name)
        try:
            if path is None or path.stat().st_size > max_bytes:
                return None
            return path.read_bytes()
        except OSError:
            return None


def media_type(name: str) -> str:
    """The media type a published file is served with, by its suffix."""
    return _MEDIA_TYPES.get(Path(name).suffix.lower()) or "application/octet-stream"


def _attempt_name(job_id: str, attempt: int | str) -> str:
    """`.<job id>.attempt-<n>`: hidden, beside the job's published folder (see the layout)."""
    return f".{job_id}.attempt-{attempt}"


def _checked_job_id(job_id: str) -> str:
    if not _JOB_ID_RE.fullmatch(job_id):
        raise ValueError("not a job ID (32 lowercase hex digits)")
    return job_id


def is_job_id(name: str) -> bool:
    return bool(_JOB_ID_RE.fullmatch(name))


def is_blob_name(name: str) -> bool:
    return bool(_SHA256_RE.fullmatch(name))
