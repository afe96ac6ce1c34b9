"""Telling a dataset's format from its first bytes, so an upload's name cannot lie about it
(only CSV, which has no magic number, needs the name too)."""

from __future__ import annotations

import codecs
import struct
from typing import Final

from jobs.datasets.base import DatasetFileError, DatasetFormat

ACCEPTED: Final = (
    ".npz (np.savez with arrays x and optional y), .safetensors (tensors x and optional y) "
    "or .csv (a header row, then numeric columns)"
)
HEAD_BYTES: Final = 4096  # what open_dataset reads for detect_format


def detect_format(filename: str, head: bytes) -> DatasetFormat:
    """Tell the format from the first bytes of a file (and, for CSV, its name).

    Raises:
        DatasetFileError: for anything but a zip (.npz), a safetensors file or CSV text.
    """
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return DatasetFormat.NPZ
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 0:
        return DatasetFormat.SAFETENSORS
    if filename.lower().endswith(".csv") and _is_text(head):
        return DatasetFormat.CSV
    raise DatasetFileError(
        f"{filename} is not a dataset format this service reads: upload {ACCEPTED}"
    )


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:  # final=False: the head may end inside a multi-byte character
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True
