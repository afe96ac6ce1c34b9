"""Dataset files: the format told by the bytes, not by the name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jobs.datasets import DatasetFileError, DatasetFormat, detect_format


def test_detect_format_by_magic_bytes(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 2)))
    save_file({"x": np.zeros((2, 2), np.float32)}, str(tmp_path / "a.safetensors"))
    npz_head = (tmp_path / "a.npz").read_bytes()[:64]
    st_head = (tmp_path / "a.safetensors").read_bytes()[:64]
    # The name does not matter for binary formats: the bytes do.
    assert detect_format("upload.bin", npz_head) is DatasetFormat.NPZ
    assert detect_format("data.csv", st_head) is DatasetFormat.SAFETENSORS
    assert detect_format("data.csv", b"a,b,label\n1,2,0\n") is DatasetFormat.CSV
    assert detect_format("DATA.CSV", "é,ü\n1,2".encode()[:3]) is DatasetFormat.CSV  # cut mid-char


@pytest.mark.parametrize(
    ("filename", "head"),
    [
        ("data.csv", b"\x89PNG\r\n\x1a\n\x00\x00"),  # binary in a .csv
        ("data.csv", b"a,b\x00,c"),
        ("data.txt", b"a,b\n1,2\n"),  # text, but not named .csv
        ("data.pkl", b"\x80\x04\x95\x00"),  # a pickle
        ("data.npy", b"\x93NUMPY\x01\x00"),
    ],
)
def test_detect_format_refuses_unknown(filename: str, head: bytes) -> None:
    with pytest.raises(DatasetFileError, match=r"\.npz .*\.safetensors .*\.csv"):
        detect_format(filename, head)
