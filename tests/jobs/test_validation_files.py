"""What the validation child accepts and refuses: datasets described, model archives checked.

Every test runs the real child (`python -m jobs.validation_child`), through the entry point
the API awaits (`validate_upload`).
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jobs.archive_check import (
    BadZipDirectory,
    InvalidArchive,
    check_zip_directory,
    read_zip_directory,
)
from jobs.datasets import DatasetFileError
from jobs.settings import Settings
from jobs.validation import validate_upload
from jobs.validation_launch import build_request
from jobs.validation_protocol import ValidationRequest
from tests.jobs.validation_helpers import validation_settings


def test_a_dataset_is_described_and_a_bad_one_refused(tmp_path: Path) -> None:
    settings = validation_settings(tmp_path)
    good = tmp_path / "blob-1"
    np.savez(good, x=np.ones((5, 3), np.float32), y=np.arange(5))
    info = asyncio.run(
        validate_upload("dataset", good.with_suffix(".npz"), "d.npz", None, settings)
    )
    assert (info["format"], info["samples"], info["x_shape"], info["y_kind"]) == (
        "npz",
        5,
        [3],
        "class",
    )
    csv = tmp_path / "blob-2"
    csv.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DatasetFileError, match=r"^d.csv line 3, column 'b': 'x' is not a number"):
        asyncio.run(validate_upload("dataset", csv, "d.csv", None, settings))
    # The feature limit is the server's setting, checked before any value is read.
    small = validation_settings(tmp_path, max_features=2)
    with pytest.raises(DatasetFileError, match=r"has 3 values per sample; .* at most 2"):
        asyncio.run(validate_upload("dataset", good.with_suffix(".npz"), "d.npz", None, small))


def test_a_label_column_is_passed_to_the_child(tmp_path: Path) -> None:
    csv = tmp_path / "blob"
    csv.write_text("a,label\n1,0\n2,1\n")
    info = asyncio.run(
        validate_upload("dataset", csv, "d.csv", "label", validation_settings(tmp_path))
    )
    assert (info["label_column"], info["x_shape"], info["y_kind"]) == ("label", [1], "class")


def test_model_archives(tmp_path: Path) -> None:
    settings = validation_settings(tmp_path)
    path = tmp_path / "blob"
    path.write_bytes(_zip({"m/models/model.json": b"{}", "m/archive_format": b"pt2"}))
    assert asyncio.run(validate_upload("model_archive", path, "m.pt2", None, settings)) == {}
    for files, reason in [
        ({"m/models/model.json": b"{}"}, "no archive_format entry"),
        ({"a/models/x.json": b"{}", "b/models/y.json": b"{}"}, "exactly one .* found 2"),
    ]:
        path.write_bytes(_zip(files))
        with pytest.raises(InvalidArchive, match=reason):
            asyncio.run(validate_upload("model_archive", path, "m.pt2", None, settings))
    path.write_bytes(b"not a zip at all")
    with pytest.raises(InvalidArchive, match="not a zip file"):
        asyncio.run(validate_upload("model_archive", path, "m.pt2", None, settings))


def test_a_real_torch_export_archive_passes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from tests.tiny_models import MLP, export_to

    path = export_to(MLP(), tmp_path / "m.pt2")
    with path.open("rb") as f:  # the EOCD reader agrees with zipfile on torch's writer
        directory = read_zip_directory(f, path.stat().st_size)
    assert directory.entries == len(zipfile.ZipFile(path).infolist())
    assert (
        asyncio.run(
            validate_upload("model_archive", path, "m.pt2", None, validation_settings(tmp_path))
        )
        == {}
    )


def test_zip_directory_read_before_parsing_zip64_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(5):
            zf.writestr(f"f{i}", b"x" * i)
        zf.comment = b"a comment" + bytes(1000)
    with pytest.raises(BadZipDirectory, match="declares 5 entries; at most 4"):
        check_zip_directory(path, max_entries=4, max_bytes=10_000)
    with pytest.raises(BadZipDirectory, match="directory takes 240 bytes; at most 100"):
        check_zip_directory(path, max_entries=5, max_bytes=100)
    assert check_zip_directory(path, max_entries=5, max_bytes=10_000).entries == 5
    # A record's signature inside the comment misleads zipfile too: refused, not misread.
    with zipfile.ZipFile(path, "a") as zf:
        zf.comment = b"PK\x05\x06 looks like a record" + bytes(100)
    with pytest.raises(BadZipDirectory):
        check_zip_directory(path, max_entries=5, max_bytes=10_000)
    forced = tmp_path / "b.zip"
    with (
        zipfile.ZipFile(forced, "w", allowZip64=True) as zf,
        zf.open("big", "w", force_zip64=True) as member,
    ):
        member.write(b"data")
    with forced.open("rb") as f:
        assert read_zip_directory(f, forced.stat().st_size).entries == 1


def test_the_request_round_trips() -> None:
    request = ValidationRequest.from_json(
        build_request("dataset", Path("x"), "x.csv", "y", Settings()).to_json()
    )
    assert request.label_column == "y" and request.kind == "dataset"


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()
