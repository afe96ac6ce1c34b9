"""The blob store: content addressing, atomic commits, and artifact names from URLs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jobs.blob_writer import BlobTooLarge
from jobs.blobs import ArtifactInfo, BlobStore

JOB_ID = "0123456789abcdef" * 2


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "data")


def _leftovers(blobs: BlobStore) -> list[Path]:
    return list(blobs.tmp_dir.iterdir()) if blobs.tmp_dir.exists() else []


def test_commit_stores_by_sha256(blobs: BlobStore) -> None:
    payload = b"weights" * 1000
    with blobs.begin_upload() as writer:
        writer.write(payload[:10])
        writer.write(payload[10:])
        assert writer.size == len(payload)
        sha, size = writer.commit()
    assert sha == hashlib.sha256(payload).hexdigest()
    assert size == len(payload)
    assert blobs.path(sha) == blobs.root / "blobs" / sha[:2] / sha
    assert blobs.path(sha).read_bytes() == payload
    assert blobs.exists(sha)
    assert _leftovers(blobs) == []


def test_same_bytes_twice_is_one_blob(blobs: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "model.pt2"
    source.write_bytes(b"same")
    first = blobs.put_file(source)
    second = blobs.put_file(source)
    assert first == second == (hashlib.sha256(b"same").hexdigest(), 4)
    assert list(blobs.blobs_dir.rglob("*")) == [blobs.path(first[0]).parent, blobs.path(first[0])]
    assert _leftovers(blobs) == []


def test_abort_and_exceptions_leave_nothing(blobs: BlobStore) -> None:
    writer = blobs.begin_upload()
    writer.write(b"half")
    writer.abort()
    writer.abort()
    with pytest.raises(ValueError):
        writer.write(b"more")

    with pytest.raises(RuntimeError), blobs.begin_upload() as failing:
        failing.write(b"partial")
        raise RuntimeError("client went away")

    with blobs.begin_upload() as forgotten:
        forgotten.write(b"never committed")

    assert _leftovers(blobs) == []
    assert not blobs.blobs_dir.exists() or list(blobs.blobs_dir.rglob("*")) == []


def test_size_limit(blobs: BlobStore) -> None:
    with blobs.begin_upload(max_bytes=8) as writer:
        writer.write(b"12345678")
        with pytest.raises(BlobTooLarge):
            writer.write(b"9")
    assert _leftovers(blobs) == []


def test_delete(blobs: BlobStore) -> None:
    with blobs.begin_upload() as writer:
        writer.write(b"x")
        sha, _ = writer.commit()
    blobs.delete(sha)
    assert not blobs.exists(sha)
    blobs.delete(sha)  # gone already: not an error


@pytest.mark.parametrize(
    "bad",
    ["", "A" * 64, "a" * 63, "a" * 65, "../" + "a" * 61, "g" * 64, "/" + "a" * 63],
)
def test_sha_is_validated(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        blobs.path(bad)
    with pytest.raises(ValueError):
        blobs.delete(bad)


@pytest.mark.parametrize("bad", ["", "0" * 31, "../" + "0" * 29, "A" * 32, "0" * 33])
def test_job_id_is_validated(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        blobs.job_dir(bad)


def _publish(blobs: BlobStore) -> Path:
    folder = blobs.job_dir(JOB_ID)
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    (folder / "results.csv").write_text("a,b\n")
    (folder / "metric-vs-size.png").write_bytes(b"\x89PNG")
    (folder / "pruned-0.pt2").write_bytes(b"PK" + b"\0" * 98)
    (folder / "notes.txt").write_text("hi")
    (folder / ".pruned-1.pt2.tmp").write_bytes(b"unfinished")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.json").write_text("{}")
    return folder


def test_list_artifacts(blobs: BlobStore) -> None:
    assert blobs.list_artifacts(JOB_ID) == []
    _publish(blobs)
    assert blobs.list_artifacts(JOB_ID) == [
        ArtifactInfo("metric-vs-size.png", 4, "image/png"),
        ArtifactInfo("notes.txt", 2, "application/octet-stream"),
        ArtifactInfo("pruned-0.pt2", 100, "application/zip"),
        ArtifactInfo("results.csv", 4, "text/csv"),
        ArtifactInfo("results.json", 2, "application/json"),
    ]


def test_symlinks_are_never_served(blobs: BlobStore, tmp_path: Path) -> None:
    folder = _publish(blobs)
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (folder / "leak.json").symlink_to(secret)
    assert "leak.json" not in [a.name for a in blobs.list_artifacts(JOB_ID)]
    assert blobs.artifact_path(JOB_ID, "leak.json") is None


def test_artifact_path_only_for_listed_names(blobs: BlobStore, tmp_path: Path) -> None:
    folder = _publish(blobs)
    (tmp_path / "data" / "jobs" / "x").write_text("outside")
    assert blobs.artifact_path(JOB_ID, "results.json") == folder / "results.json"
    for name in [
        "../x",
        "a/b",
        "sub/x.json",
        "sub",
        str(folder / "results.json"),
        "/etc/passwd",
        ".pruned-1.pt2.tmp",
        "",
        ".",
        "..",
        "results.json/",
        "./results.json",
    ]:
        assert blobs.artifact_path(JOB_ID, name) is None, name


def test_remove_job_dir(blobs: BlobStore) -> None:
    folder = _publish(blobs)
    blobs.remove_job_dir(JOB_ID)
    assert not folder.exists()
    blobs.remove_job_dir(JOB_ID)  # gone already: not an error
