"""The S3 blob store against a real S3-protocol server (moto's, a process on 127.0.0.1):
uploads by content, inputs fetched with their hash checked, result sets published with the
manifest last (the first attempt wins), and every key removed when nothing needs it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from jobs.blob_writer import SPOOL_PREFIX
from jobs.manifest import write_manifest
from jobs.remote_sweep import sweep_remote_attempts
from jobs.s3_blobs import BlobUnavailable, S3BlobStore
from jobs.states import JobStatus
from jobs.store import JobStore
from tests.s3_server import S3Server, s3_blob_store

PREFIX = "team/dw"
JOB_ID = "0123456789abcdef" * 2


@pytest.fixture
def blobs(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3BlobStore:
    return s3_blob_store(s3, bucket, PREFIX, tmp_path / "data", monkeypatch)


def _keys(s3: S3Server, bucket: str, under: str = "") -> list[str]:
    return [k.removeprefix(PREFIX + "/") for k in s3.keys(bucket, f"{PREFIX}/{under}")]


def _commit(blobs: S3BlobStore, payload: bytes) -> tuple[str, Path]:
    with blobs.begin_upload() as writer:
        writer.write(payload)
        sha, _ = writer.commit()
        return sha, writer.local_path


def test_an_upload_goes_to_the_bucket_by_hash_and_stays_local_only_until_discarded(
    s3: S3Server, bucket: str, blobs: S3BlobStore
) -> None:
    payload = b"weights" * 100_000
    sha, local = _commit(blobs, payload)
    assert sha == hashlib.sha256(payload).hexdigest()
    assert _keys(s3, bucket) == [f"blobs/{sha}"]
    assert blobs.exists(sha)
    # The API's checks read the local copy; then it goes (the disk is a spool, not a cache).
    assert local.read_bytes() == payload and local.name.startswith(SPOOL_PREFIX)
    blobs.discard_local_copy(local)
    assert list(blobs.tmp_dir.iterdir()) == []
    assert not blobs.blobs_dir.exists() or list(blobs.blobs_dir.rglob("*")) == []

    # Same bytes again: the object of that name is kept, not uploaded a second time (the
    # marker written over it shows that nothing replaced it).
    s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/blobs/{sha}", Body=b"marker")
    again, local = _commit(blobs, payload)
    blobs.discard_local_copy(local)
    assert again == sha and _keys(s3, bucket) == [f"blobs/{sha}"]
    body = s3.client().get_object(Bucket=bucket, Key=f"{PREFIX}/blobs/{sha}")["Body"].read()
    assert body == b"marker"

    blobs.delete(sha)
    assert not blobs.exists(sha) and _keys(s3, bucket) == []
    blobs.delete(sha)  # gone already: not an error


def test_an_aborted_upload_leaves_nothing(s3: S3Server, bucket: str, blobs: S3BlobStore) -> None:
    with pytest.raises(RuntimeError), blobs.begin_upload() as writer:
        writer.write(b"partial")
        raise RuntimeError("client went away")
    assert _keys(s3, bucket) == [] and list(blobs.tmp_dir.iterdir()) == []


def test_a_failed_transfer_leaves_no_local_file(
    s3: S3Server, bucket: str, blobs: S3BlobStore
) -> None:
    # The store refuses every upload (after the client has sent nothing).
    blobs.objects._client.meta.events.register("before-call.s3.PutObject", _refuse)
    with pytest.raises(RuntimeError), blobs.begin_upload() as writer:
        writer.write(b"x" * 10)
        writer.commit()
    assert [p.name for p in blobs.tmp_dir.iterdir()] == [] and _keys(s3, bucket) == []


def _refuse(**_: object) -> None:
    raise RuntimeError("refused")


def test_fetch_downloads_and_checks_the_hash(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    sha, local = _commit(blobs, b"dataset bytes")
    blobs.discard_local_copy(local)
    into = tmp_path / "attempt" / "inputs"
    path = blobs.fetch(sha, into, "data.npz")
    assert path.parent == into and path.read_bytes() == b"dataset bytes"

    s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/blobs/{sha}", Body=b"tampered")
    with pytest.raises(BlobUnavailable, match=r"data\.npz: .*sha256 differs"):
        blobs.fetch(sha, tmp_path / "other", "data.npz")
    with pytest.raises(BlobUnavailable, match=r"model\.pt2: its file is missing"):
        blobs.fetch("f" * 64, tmp_path / "other", "model.pt2")
    assert list((tmp_path / "other").iterdir()) == []  # no partial download left


def _staging(root: Path, **files: bytes) -> Path:
    folder = root / f"staging-{len(list(root.glob('staging-*')))}"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name.replace("_", ".")).write_bytes(data)
    write_manifest(folder)
    return folder


def test_publishing_writes_the_manifest_last_and_the_first_attempt_wins(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    assert not blobs.is_published(JOB_ID) and blobs.list_artifacts(JOB_ID) == []
    first = _staging(tmp_path, results_json=b'{"a": 1}', pruned_0_pt2=b"PK" + b"\0" * 98)
    # A file the manifest lists cannot be read: nothing becomes visible, nothing stays.
    (first / "pruned.0.pt2").rename(tmp_path / "moved")
    with pytest.raises(OSError):
        blobs.publish_results(JOB_ID, 1, first)
    assert _keys(s3, bucket) == [] and not blobs.is_published(JOB_ID)
    (tmp_path / "moved").rename(first / "pruned.0.pt2")

    assert blobs.publish_results(JOB_ID, 1, first)
    job = f"jobs/{JOB_ID}"
    assert _keys(s3, bucket) == [
        f"{job}/attempt-1/pruned.0.pt2",
        f"{job}/attempt-1/results.json",
        f"{job}/manifest.json",
    ]
    assert blobs.is_published(JOB_ID)
    assert [(a.name, a.bytes, a.media_type) for a in blobs.list_artifacts(JOB_ID)] == [
        ("pruned.0.pt2", 100, "application/zip"),
        ("results.json", 8, "application/json"),
    ]
    assert blobs.read_artifact(JOB_ID, "results.json", 1024) == b'{"a": 1}'
    assert blobs.read_artifact(JOB_ID, "results.json", 4) is None  # over the limit
    assert blobs.remote_artifact(JOB_ID, "../manifest.json") is None

    # A second attempt (its worker thought the first was lost) loses: the first set stays.
    second = _staging(tmp_path, results_json=b'{"a": 2}')
    assert not blobs.publish_results(JOB_ID, 2, second)
    assert _keys(s3, bucket, f"{job}/attempt-2") == []
    assert blobs.read_artifact(JOB_ID, "results.json", 1024) == b'{"a": 1}'
    assert (
        json.loads(
            s3.client()
            .get_object(Bucket=bucket, Key=f"{PREFIX}/{job}/manifest.json")["Body"]
            .read()
        )["attempt"]
        == 1
    )


def test_downloads_stream_ranges_and_presign(blobs: S3BlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    blobs.publish_results(JOB_ID, 1, _staging(tmp_path, pruned_0_pt2=data))
    artifact = blobs.remote_artifact(JOB_ID, "pruned.0.pt2")
    assert artifact is not None
    body = blobs.open_artifact(artifact, 10, 19)
    assert body is not None and (body.size, body.total) == (10, len(data))
    assert b"".join(body.chunks) == data[10:20] and body.content_range == f"bytes 10-19/{len(data)}"
    body.close()
    url = blobs.presigned_url(artifact, 60)
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-disposition"] == 'attachment; filename="pruned.0.pt2"'


def test_an_attempt_clears_what_earlier_ones_left(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    client, job = s3.client(), f"{PREFIX}/jobs/{JOB_ID}"
    client.put_object(Bucket=bucket, Key=f"{job}/attempt-1/results.json", Body=b"half")
    local = blobs.attempt_dirs(JOB_ID, 1).work
    local.mkdir(parents=True)
    assert not blobs.clear_unpublished(JOB_ID)  # never published: everything goes
    assert _keys(s3, bucket) == [] and not local.exists()

    blobs.publish_results(JOB_ID, 2, _staging(tmp_path, results_json=b"{}"))
    client.put_object(Bucket=bucket, Key=f"{job}/attempt-3/stats.json", Body=b"stray")
    assert blobs.clear_unpublished(JOB_ID)  # published: it stays, the stray goes
    assert _keys(s3, bucket) == [
        f"jobs/{JOB_ID}/attempt-2/results.json",
        f"jobs/{JOB_ID}/manifest.json",
    ]
    # A manifest whose files are not all there is no outcome.
    client.delete_object(Bucket=bucket, Key=f"{job}/attempt-2/results.json")
    assert not blobs.is_published(JOB_ID)
    assert not blobs.clear_unpublished(JOB_ID) and _keys(s3, bucket) == []


def test_deleting_a_job_removes_every_key(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    other = "f" * 32
    blobs.publish_results(JOB_ID, 1, _staging(tmp_path, results_json=b"{}", stats_json=b"{}"))
    blobs.publish_results(other, 1, _staging(tmp_path, results_json=b"{}"))
    s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/jobs/{JOB_ID}/attempt-2/x", Body=b"")
    blobs.remove_job_dir(JOB_ID)
    assert _keys(s3, bucket) == [
        f"jobs/{other}/attempt-1/results.json",
        f"jobs/{other}/manifest.json",
    ]
    blobs.remove_job_dir(JOB_ID)  # gone already: not an error


def test_the_sweeps_remove_what_nothing_refers_to(
    s3: S3Server, bucket: str, blobs: S3BlobStore, tmp_path: Path
) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    used, _ = _commit(blobs, b"a model")
    orphan, _ = _commit(blobs, b"nobody's")
    store.models.add("acme", used, 7, "m.pt2")
    assert sorted(blobs.blobs_older_than(-1)) == sorted([used, orphan])
    assert blobs.blobs_older_than(3600) == []  # too young to be anyone's leftover
    for sha in store.blob_refs.unreferenced(blobs.blobs_older_than(-1)):
        store.blob_refs.release_blob(sha, blobs.delete)
    assert _keys(s3, bucket, "blobs/") == [f"blobs/{used}"]

    running = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    store.lifecycle.start(running)  # its attempt 1 is live
    done = store.jobs.add("acme", "m" * 32, "d" * 32, None, {}).id
    store.lifecycle.start(done)
    store.lifecycle.finish(done, JobStatus.SUCCEEDED)
    put = s3.client().put_object
    for job_id, attempt in ((running, 1), (done, 2), (JOB_ID, 1)):  # JOB_ID: not in the store
        put(Bucket=bucket, Key=f"{PREFIX}/jobs/{job_id}/attempt-{attempt}/f", Body=b"")
    blobs.publish_results(done, 1, _staging(tmp_path, results_json=b"{}"))

    assert sweep_remote_attempts(store, blobs) == 2  # `done`'s stray attempt, JOB_ID's keys
    assert _keys(s3, bucket, "jobs/") == sorted(
        [
            f"jobs/{done}/attempt-1/results.json",
            f"jobs/{done}/manifest.json",
            f"jobs/{running}/attempt-1/f",
        ]
    )
    assert sweep_remote_attempts(store, blobs) == 0  # nothing left to remove
    store.dispose()
