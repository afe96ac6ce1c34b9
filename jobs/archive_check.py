"""Zip files read within bounds, and the structural check of an uploaded `.pt2` archive.

`zipfile` reads the whole central directory into memory and builds one `ZipInfo` per entry
before a caller can look at anything: a small upload that declares hundreds of thousands of
entries costs the reader hundreds of MB. `read_zip_directory` reads the End Of Central
Directory record (22 bytes near the end of the file, or its ZIP64 twin) first, so the entry
count and the directory's size are checked against caps before `zipfile` parses anything.

The archive check is cheap and structural (entry names only; the graph is never parsed):
the worker's safe reader interprets model contents. It runs in the validation child
(`jobs.validation`), never in the API process.
"""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

ZIP_MAGIC: Final = b"PK\x03\x04"
# A torch.export archive holds a few entries per tensor; 65 536 entries and 16 MiB of
# directory are far beyond any real model and still cheap to parse (tens of MB).
MAX_ARCHIVE_ENTRIES: Final = 65_536
MAX_ARCHIVE_DIRECTORY_BYTES: Final = 16 * 1024 * 1024

_EOCD = struct.Struct("<4s4H2LH")  # signature, disks, entries (disk, total), size, offset, comment
_EOCD_SIGNATURE: Final = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE: Final = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIGNATURE: Final = b"PK\x06\x06"
_SEARCHED: Final = (1 << 16) + 22  # where zipfile looks for the record: the same bytes

# torch.export.save writes `<archive>/models/<name>.json` (the graph) and
# `<archive>/archive_format`.
_GRAPH_ENTRY = re.compile(r"([^/]+)/models/[^/]+\.json")


class InvalidArchive(ValueError):
    """The uploaded model archive cannot be used; the message says what is wrong (the API
    adds how to save a model it reads)."""


class BadZipDirectory(ValueError):
    """The zip's directory is missing, damaged or larger than the caller allows."""


@dataclass(frozen=True)
class ZipDirectory:
    """What the End Of Central Directory record declares, before anything is parsed."""

    entries: int
    size: int  # bytes of the central directory, which zipfile reads whole


def read_zip_directory(f: BinaryIO, file_size: int) -> ZipDirectory:
    """The entry count and directory size, as `zipfile` will read them (ZIP64 included).

    Raises:
        BadZipDirectory: no End Of Central Directory record, or one that does not fit the file.
    """
    tail_size = min(file_size, _SEARCHED)
    f.seek(file_size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or at + _EOCD.size > len(tail):
        raise BadZipDirectory("not a zip file (no end of central directory record)")
    _, _, _, _, entries, size, _, _ = _EOCD.unpack_from(tail, at)
    eocd_offset = file_size - tail_size + at
    locator_offset = eocd_offset - _ZIP64_LOCATOR.size
    if locator_offset >= 0:
        f.seek(locator_offset)
        locator = f.read(_ZIP64_LOCATOR.size)
        if locator[:4] == _ZIP64_LOCATOR_SIGNATURE:
            entries, size = _zip64_directory(f, locator_offset)
    if size > file_size:
        raise BadZipDirectory(f"the zip directory claims {size} bytes, more than the file holds")
    return ZipDirectory(entries=entries, size=size)


def _zip64_directory(f: BinaryIO, locator_offset: int) -> tuple[int, int]:
    # zipfile looks for the ZIP64 record right before the locator: so do we.
    record_offset = locator_offset - _ZIP64_EOCD.size
    if record_offset < 0:
        raise BadZipDirectory("the zip's ZIP64 directory record is missing")
    f.seek(record_offset)
    record = f.read(_ZIP64_EOCD.size)
    if len(record) != _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIGNATURE:
        raise BadZipDirectory("the zip's ZIP64 directory record is damaged")
    fields = _ZIP64_EOCD.unpack(record)
    return fields[7], fields[8]  # total entries, directory size


def check_zip_directory(path: Path, max_entries: int, max_bytes: int) -> ZipDirectory:
    """Refuse a zip whose directory declares more entries or bytes than allowed.

    Raises:
        BadZipDirectory: with the numbers, before `zipfile` allocates anything.
    """
    with path.open("rb") as f:
        directory = read_zip_directory(f, path.stat().st_size)
    if directory.entries > max_entries:
        raise BadZipDirectory(
            f"the zip declares {directory.entries} entries; at most {max_entries} are accepted"
        )
    if directory.size > max_bytes:
        raise BadZipDirectory(
            f"the zip's directory takes {directory.size} bytes; at most {max_bytes} are accepted"
        )
    return directory


def check_export_archive(path: Path) -> None:
    """Cheap structural check of a .pt2: a bounded zip with one graph and its archive_format.

    Raises:
        InvalidArchive: what is wrong.
    """
    with path.open("rb") as f:
        if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise InvalidArchive("the file is not a torch.export archive (not a zip file)")
    try:
        check_zip_directory(path, MAX_ARCHIVE_ENTRIES, MAX_ARCHIVE_DIRECTORY_BYTES)
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except BadZipDirectory as exc:
        raise InvalidArchive(f"the zip archive is not usable: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidArchive(f"the zip archive is damaged ({exc})") from None
    graphs = [m for name in names if (m := _GRAPH_ENTRY.fullmatch(name))]
    if len(graphs) != 1:
        raise InvalidArchive(
            f"expected exactly one <archive>/models/<name>.json, found {len(graphs)}"
        )
    if f"{graphs[0].group(1)}/archive_format" not in names:
        raise InvalidArchive("the archive has no archive_format entry")
