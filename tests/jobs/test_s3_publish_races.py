"""Publishing to an S3 store and sweeping it when calls fail or interleave, against a real
S3-protocol server (moto's, a process on 127.0.0.1): a manifest PUT whose answer was lost,
a conditional write in flight, the reaper's listing taken before a manifest exists, keys
that are not a job's, and files a result set must never publish (dot-files, links).

The failures are injected into the client's own calls (botocore's event hooks), so the
server sees exactly the requests a lost answer or a resend would make.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from jobs.manifest import is_complete, write_manifest
from jobs.remote_sweep import sweep_remote_attempts
from jobs.s3_blobs import S3BlobStore
from jobs.states import JobStatus
from jobs.store import JobStore
from tests.s3_server import S3Server, s3_blob_store

PREFIX = "dw"


@pytest.fixture
def blobs(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3BlobStore:
    return s3_blob_store(s3, bucket, PREFIX, tmp_path / "data", monkeypatch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    jobs = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    jobs.migrate()
    yield jobs
    jobs.dispose()


def _keys(s3: S3Server, bucket: str) -> list[str]:
    return [k.removeprefix(PREFIX + "/") for k in s3.keys(bucket, PREFIX + "/")]


def _staging(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_bytes(b'{"a": 1}')
    (folder / "pruned.0.pt2").write_bytes(b"PK" + b"\0" * 98)
    write_manifest(folder)
    return folder


def _running_job(store: JobStore) -> str:
    job_id = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    store.lifecycle.start(job_id)  # attempt 1, running
    return job_id


def _on_manifest(params: dict[str, Any]) -> bool:
    return str(params.get("url", params.get("url_path", ""))).endswith("/manifest.json")


def test_a_manifest_put_resent_after_its_answer_was_lost_publishes(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    job_id = "a" * 32
    resent: list[int] = []

    def resend_once(request_dict: dict[str, Any], attempts: int, **_: Any) -> Any:
        # The PUT was stored, but its answer is "lost": boto3 sends it again, and the
        # resend meets the manifest the first one wrote (412).
        if _on_manifest(request_dict) and attempts == 1:
            resent.append(attempts)
            return 0  # seconds to wait: resend at once
        return None

    blobs.objects._client.meta.events.register_first("needs-retry.s3.PutObject", resend_once)
    assert blobs.publish_results(job_id, 1, _staging(tmp_path / "staging"))
    assert resent == [1]  # the resend happened, and was refused
    assert blobs.is_published(job_id)
    assert [a.name for a in blobs.list_artifacts(job_id)] == ["pruned.0.pt2", "results.json"]


def test_a_manifest_put_that_failed_after_it_was_stored_publishes(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    job_id = "b" * 32

    def time_out(request_dict: dict[str, Any], attempts: int, **_: Any) -> None:
        # Stored, then every retry's answer lost: the call fails though the write landed.
        if _on_manifest(request_dict):
            raise ReadTimeoutError(endpoint_url=s3.url)

    blobs.objects._client.meta.events.register_first("needs-retry.s3.PutObject", time_out)
    assert blobs.publish_results(job_id, 1, _staging(tmp_path / "staging"))
    assert blobs.is_published(job_id)
    assert len(_keys(s3, bucket)) == 3  # its two files and the manifest naming them


def test_a_manifest_put_that_failed_before_it_was_stored_leaves_nothing(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    def time_out(params: dict[str, Any], **_: Any) -> None:
        if _on_manifest(params):
            raise ReadTimeoutError(endpoint_url=s3.url)

    blobs.objects._client.meta.events.register_first("before-call.s3.PutObject", time_out)
    with pytest.raises(ReadTimeoutError):
        blobs.publish_results("c" * 32, 1, _staging(tmp_path / "staging"))
    assert _keys(s3, bucket) == []  # no manifest: the attempt's files went


def test_a_write_of_the_manifest_in_flight_is_waited_for(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    job_id = "d" * 32
    conflicts: list[int] = []

    def conflict_once(params: dict[str, Any], **_: Any) -> None:
        # S3 answers 409 while another conditional write of the key is in flight; this
        # one then failed (nothing was written), and the manifest is still absent.
        if _on_manifest(params) and not conflicts:
            conflicts.append(1)
            answer: Any = {
                "Error": {"Code": "ConditionalRequestConflict", "Message": "in flight"},
                "ResponseMetadata": {"HTTPStatusCode": 409},
            }
            raise ClientError(answer, "PutObject")

    blobs.objects._client.meta.events.register_first("before-call.s3.PutObject", conflict_once)
    assert blobs.publish_results(job_id, 1, _staging(tmp_path / "staging"))
    assert conflicts == [1] and blobs.is_published(job_id)


def test_the_sweep_keeps_a_set_published_after_its_listing(
    s3: S3Server,
    bucket: str,
    blobs: S3BlobStore,
    store: JobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = _running_job(store)
    staging = _staging(tmp_path / "staging")
    for name in ("results.json", "pruned.0.pt2"):  # the worker is still uploading
        blobs.objects.upload_file(staging / name, f"{PREFIX}/jobs/{job_id}/attempt-1/{name}")
    listing = blobs.stored_jobs

    def listed_then_published() -> Any:
        seen = listing()  # attempt 1's files, no manifest
        # Meanwhile the worker writes the manifest and records success.
        assert blobs.publish_results(job_id, 1, staging)
        assert store.lifecycle.finish(job_id, JobStatus.SUCCEEDED, attempt=1)
        return seen

    monkeypatch.setattr(blobs, "stored_jobs", listed_then_published)
    assert sweep_remote_attempts(store, blobs) == 0
    assert blobs.is_published(job_id)


def test_the_sweep_leaves_keys_that_are_not_a_jobs(
    s3: S3Server, bucket: str, blobs: S3BlobStore, store: JobStore
) -> None:
    put = s3.client().put_object
    foreign = [f"{PREFIX}/jobs/README.md", f"{PREFIX}/jobs/other-app/data.bin"]
    for key in foreign:
        put(Bucket=bucket, Key=key, Body=b"not Deadweight's")
    gone = "e" * 32  # a job the store no longer has: its keys still go
    put(Bucket=bucket, Key=f"{PREFIX}/jobs/{gone}/attempt-1/f", Body=b"")
    assert sweep_remote_attempts(store, blobs) == 1
    assert s3.keys(bucket) == sorted(foreign)


def test_dot_files_and_links_are_never_published(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    secret = tmp_path / "worker-secret"
    secret.write_bytes(b"not the job's")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "results.json").write_bytes(b"{}")
    (staging / ".partial").write_bytes(b"a leftover")
    (staging / "stats.json").symlink_to(secret)
    write_manifest(staging)
    assert is_complete(staging)  # the data directory's store reads the same manifest
    job_id = "f" * 32
    assert blobs.publish_results(job_id, 1, staging)
    assert blobs.is_published(job_id)
    assert [a.name for a in blobs.list_artifacts(job_id)] == ["results.json"]
    assert _keys(s3, bucket) == [
        f"jobs/{job_id}/attempt-1/results.json",
        f"jobs/{job_id}/manifest.json",
    ]
