"""Who still needs a blob (jobs/blob_refs.py), on SQLite and PostgreSQL: upload holds and
records share a blob, and its file goes with the last of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.blob_refs import HoldLost
from jobs.blobs import BlobStore
from jobs.store import JobStore

SHA = "ab" * 32


def test_a_hold_keeps_the_blob_through_another_records_release(
    store: JobStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path)
    hold = store.blob_refs.hold_upload("alpha", SHA, 3)
    path = blobs.path(SHA)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"abc")
    other = store.datasets.add("beta", SHA, 3, "d.npz", "npz", 1, [1], False, None)
    store.datasets.delete("beta", other.id)
    assert not store.blob_refs.release_blob(SHA, blobs.delete)
    assert path.exists()
    store.models.add("alpha", SHA, 3, "m.pt2", hold_id=hold)
    assert store.blob_refs.stale_holds(-3600) == [], "the record replaced the hold"
    assert store.blob_refs.unreferenced([SHA, "cd" * 32]) == ["cd" * 32]


def test_releasing_the_last_hold_removes_the_blob_once(store: JobStore, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    holds = [
        store.blob_refs.hold_upload("alpha", SHA, 3),
        store.blob_refs.hold_upload("beta", SHA, 3),
    ]
    path = blobs.path(SHA)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"abc")
    store.blob_refs.release_hold(holds[0], blobs.delete)
    assert path.exists()
    store.blob_refs.release_hold(holds[1], blobs.delete)
    assert not path.exists()
    store.blob_refs.release_hold(holds[1], blobs.delete)  # twice is harmless


def test_a_record_is_not_written_once_its_hold_was_released(
    store: JobStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path)
    hold = store.blob_refs.hold_upload("alpha", SHA, 3)
    store.blob_refs.release_hold(hold, blobs.delete)  # the reaper took it for a dead upload's
    with pytest.raises(HoldLost):
        store.models.add("alpha", SHA, 3, "m.pt2", hold_id=hold)
    with pytest.raises(HoldLost):
        store.datasets.add("alpha", SHA, 3, "d.npz", "npz", 1, [1], False, None, hold_id=hold)
    assert store.usage.pending_inspections("alpha") == 0 and store.usage.stored_bytes("alpha") == 0
