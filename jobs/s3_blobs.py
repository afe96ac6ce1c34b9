"""The blob store in an S3 bucket (`DEADWEIGHT_BLOB_URL=s3://bucket/prefix`).

Keys under the prefix:
    blobs/<sha256>                      an upload, named by the sha256 of its bytes
    jobs/<job_id>/attempt-<n>/<name>    attempt n's published files
    jobs/<job_id>/manifest.json         written last, with `If-None-Match: *` (the first
                                        attempt to write it wins): {"attempt": n, "files":
                                        {name: bytes}}; only a manifest makes a result set
                                        visible, and only the attempt it names is published

Keys of attempts that no manifest names are garbage: removed by the next attempt
(`clear_unpublished`), when publishing fails, when the job is deleted or expires, and by
the reaper's sweep (`jobs.remote_sweep`).

The data directory stays each process's working area, as `BlobStore` lays it out: uploads
are spooled in tmp/ while they arrive and hashed, then uploaded (in parts when large) and
kept locally only until the API has validated them; a job's inputs are downloaded into its
attempt's working folder, and its files are staged in its attempt folder before they go up.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.blob_writer import BlobWriter
from jobs.blobs import ArtifactInfo, BlobStore, is_blob_name, media_type
from jobs.job_table import UploadGone
from jobs.manifest import listed_files
from jobs.object_store import ObjectBody, ObjectStore
from jobs.remote_listing import JobListing, StoredJob
from jobs.remote_manifest import MANIFEST_KEY, MAX_MANIFEST_BYTES, RemoteManifest

log = logging.getLogger("deadweight.blobs")

_HASH_CHUNK = 1024 * 1024
# Writes of a job's manifest while another write of it is in flight (409) or it cannot be read.
_MANIFEST_TRIES = 3


class BlobUnavailable(UploadGone):
    """A job's or an inspection's input is missing from the bucket, or its bytes do not
    match its sha256; the job fails with this message (the upload must be sent again)."""


@dataclass(frozen=True)
class RemoteArtifact:
    """A published file and the key it is read from."""

    info: ArtifactInfo
    key: str


class S3BlobStore(BlobStore):
    """`BlobStore` with blobs and published files in a bucket (see the module docstring)."""

    def __init__(self, root: Path, objects: ObjectStore) -> None:
        super().__init__(root)
        self.objects = objects
        self._listing = JobListing(objects)

    def ping(self) -> None:
        """Raises unless the bucket answers (`/readyz`)."""
        self.objects.ping()

    # -- uploads --------------------------------------------------------------------------
    def begin_upload(self, max_bytes: int | None = None) -> BlobWriter:
        return BlobWriter(self.tmp_dir, self.path, max_bytes, remote=self._place)

    def _place(self, temp: Path, sha256: str) -> None:
        key = self._blob_key(sha256)
        # Content-addressed: an object of this name holds these very bytes already.
        if self.objects.size(key) is None:
            self.objects.upload_file(temp, key)

    def discard_local_copy(self, path: Path) -> None:
        # The API's disk is a spool, not a cache: the bucket keeps the blob.
        path.unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        return self.objects.size(self._blob_key(sha256)) is not None

    def delete(self, sha256: str) -> None:
        self.objects.delete(self._blob_key(sha256))

    def fetch(self, sha256: str, into: Path, name: str) -> Path:
        """Download the blob into `into` and check its sha256 on the way in.

        Raises:
            BlobUnavailable: no such object, or its bytes are not the ones named.
        """
        into.mkdir(parents=True, exist_ok=True)
        target = into / sha256
        if target.is_file():  # fetched and checked already (a job's data is its eval data)
            return target
        partial = into / f".{sha256}.part"
        if not self.objects.download_file(self._blob_key(sha256), partial):
            raise BlobUnavailable(
                f"{name}: its file is missing from the blob store; upload it again"
            )
        if _sha256_of(partial) != sha256:
            partial.unlink(missing_ok=True)
            raise BlobUnavailable(
                f"{name}: its file in the blob store is not the bytes that were uploaded "
                "(its sha256 differs); upload it again"
            )
        partial.rename(target)
        return target

    def blobs_older_than(self, min_age_seconds: float) -> list[str]:
        cutoff = time.time() - min_age_seconds
        prefix = self.objects.key("blobs") + "/"
        return [
            info.key[len(prefix) :]
            for info in self.objects.list(prefix)
            if is_blob_name(info.key[len(prefix) :]) and info.modified.timestamp() < cutoff
        ]

    # -- published result sets -------------------------------------------------------------
    def publish_results(self, job_id: str, attempt: int, staging: Path) -> bool:
        """Upload the sealed staging folder's files under this attempt's keys, then write the
        manifest last, only if no attempt wrote one first. False when one did and its set is
        complete (it stays the outcome; this attempt's keys are removed).

        Raises:
            OSError: another attempt's manifest names files that are not all there, or what
                the manifest names could not be told.
        """
        prefix = self._attempt_prefix(job_id, attempt)
        try:
            files = listed_files(staging)
            for name in sorted(files):
                self.objects.upload_file(staging / name, prefix + name)
        except BaseException:
            self._remove_quietly(prefix)  # garbage from now on; the sweep retries if this fails
            raise
        mine = RemoteManifest(attempt, files)
        key = self._manifest_key(job_id)
        for tries in range(1, _MANIFEST_TRIES + 1):
            try:
                if self.objects.put_bytes(key, mine.encode(), only_if_absent=True):
                    return True
            except Exception:
                decided = self._after_failed_put(job_id, mine)
                if decided is None:
                    raise
                return decided
            # Refused: a manifest exists (our own PUT's, too, when boto3 resent it after a
            # lost answer), or another write of it is in flight (409): it decides.
            decided = self._decide(job_id, mine)
            if decided is not None:
                return decided
            time.sleep(0.2 * tries)  # the write in flight lands, or fails and leaves it to us
        raise OSError(f"job {job_id}: its manifest stays unreadable, or in another's write")

    def _decide(self, job_id: str, mine: RemoteManifest) -> bool | None:
        """What the job's manifest, read now, makes of this attempt's: True when it names
        it, False when another attempt's complete set (this attempt's keys are removed),
        None when there is none, or none readable.

        Raises:
            OSError: another attempt's manifest names files that are not all there.
        """
        published = self.published(job_id)
        if published is None or published == mine:
            return None if published is None else True
        self.objects.delete_prefix(self._attempt_prefix(job_id, mine.attempt))
        if not self._complete(job_id, published):
            raise OSError(f"job {job_id}: another attempt's manifest names files that are missing")
        return False

    def _after_failed_put(self, job_id: str, mine: RemoteManifest) -> bool | None:
        """The manifest PUT failed, yet it may have been stored and only its answer lost:
        `_decide`, and this attempt's keys go once no manifest names them. None: unknown,
        the caller raises the PUT's error."""
        try:
            decided = self._decide(job_id, mine)
        except Exception as exc:
            # Not known: the keys stay; the sweep never removes the attempt a manifest names.
            log.warning("job %s: could not read its manifest back: %s", job_id, exc)
            return None
        if decided is None:
            self._remove_quietly(self._attempt_prefix(job_id, mine.attempt))
        return decided

    def clear_unpublished(self, job_id: str) -> bool:
        for folder in self.attempt_dirs_of(job_id):  # this machine's leftovers
            shutil.rmtree(folder, ignore_errors=True)
        published = self.published(job_id)
        if published is not None and self._complete(job_id, published):
            stored = self.stored_jobs_of(job_id)
            for attempt in stored.attempts - {published.attempt}:
                self.remove_attempt(job_id, attempt)
            return True
        # Never published whole (or not at all): nothing under the job's keys is an outcome.
        self.objects.delete_prefix(self._job_prefix(job_id))
        return False

    def is_published(self, job_id: str) -> bool:
        published = self.published(job_id)
        return published is not None and self._complete(job_id, published)

    def published(self, job_id: str) -> RemoteManifest | None:
        """The job's manifest; None when it has none (or an unreadable one)."""
        raw = self.objects.get_bytes(self._manifest_key(job_id), MAX_MANIFEST_BYTES)
        return None if raw is None else RemoteManifest.decode(raw)

    def list_artifacts(self, job_id: str) -> list[ArtifactInfo]:
        published = self.published(job_id)
        if published is None:
            return []
        return [
            ArtifactInfo(name=name, bytes=size, media_type=media_type(name))
            for name, size in sorted(published.files.items())
        ]

    def remote_artifact(self, job_id: str, name: str) -> RemoteArtifact | None:
        """A published file by name, or None. `name` comes from a URL: it is looked up in
        the manifest, never joined onto a key unchecked."""
        published = self.published(job_id)
        if published is None or name not in published.files:
            return None
        info = ArtifactInfo(name=name, bytes=published.files[name], media_type=media_type(name))
        return RemoteArtifact(info, self._attempt_prefix(job_id, published.attempt) + name)

    def open_artifact(
        self, artifact: RemoteArtifact, first: int | None = None, last: int | None = None
    ) -> ObjectBody | None:
        """The file's bytes as a stream (bytes `first` to `last` inclusive, when given)."""
        return self.objects.open(artifact.key, first, last)

    def presigned_url(self, artifact: RemoteArtifact, seconds: int) -> str:
        """A URL that downloads the file from the bucket itself for `seconds`."""
        info = artifact.info
        return self.objects.presigned_get(artifact.key, seconds, info.name, info.media_type)

    def read_artifact(self, job_id: str, name: str, max_bytes: int) -> bytes | None:
        artifact = self.remote_artifact(job_id, name)
        if artifact is None or artifact.info.bytes > max_bytes:
            return None
        return self.objects.get_bytes(artifact.key, max_bytes)

    def remove_job_dir(self, job_id: str) -> None:
        """Remove the job's keys (its manifest and every attempt's files) and the folders
        its attempts left on this machine."""
        super().remove_job_dir(job_id)
        self.objects.delete_prefix(self._job_prefix(job_id))

    # -- the reaper's sweep (`jobs.remote_sweep`) --------------------------------------------
    def stored_jobs(self) -> dict[str, StoredJob]:
        """Job ID -> what it has in the bucket (one listing of jobs/, a page at a time)."""
        return self._listing.jobs_under(self.objects.key("jobs") + "/")

    def stored_jobs_of(self, job_id: str) -> StoredJob:
        """What one job has in the bucket."""
        return self._listing.jobs_under(self._job_prefix(job_id)).get(job_id, StoredJob())

    def remove_attempt(self, job_id: str, attempt: int) -> None:
        self.objects.delete_prefix(self._attempt_prefix(job_id, attempt))

    # -- keys -------------------------------------------------------------------------------
    def _blob_key(self, sha256: str) -> str:
        self.path(sha256)  # raises ValueError unless it is a sha256 (it becomes a key)
        return self.objects.key("blobs", sha256)

    def _job_prefix(self, job_id: str) -> str:
        self.job_dir(job_id)  # raises ValueError unless it is a job ID
        return self.objects.key("jobs", job_id) + "/"

    def _attempt_prefix(self, job_id: str, attempt: int) -> str:
        return f"{self._job_prefix(job_id)}attempt-{int(attempt)}/"

    def _manifest_key(self, job_id: str) -> str:
        return self._job_prefix(job_id) + MANIFEST_KEY

    def _complete(self, job_id: str, published: RemoteManifest) -> bool:
        """The attempt's keys are exactly the files the manifest lists, at their sizes."""
        prefix = self._attempt_prefix(job_id, published.attempt)
        present = {info.key[len(prefix) :]: info.size for info in self.objects.list(prefix)}
        return present == published.files

    def _remove_quietly(self, prefix: str) -> None:
        try:
            self.objects.delete_prefix(prefix)
        except Exception as exc:  # the store is down: the reaper's sweep removes them later
            log.warning("could not remove %s: %s", prefix, exc)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
