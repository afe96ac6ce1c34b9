"""The zip layer of the safe reader: which entries a `.pt2` archive may hold, and reading them.

An archive written by `torch.export.save` has one top folder and a fixed set of entry names.
Anything else (another name, a duplicate, an encrypted entry, a zip bomb) is refused before a
byte is read. Entries are then read with caps: never more than an entry declares, nor more
than `ArchiveLimits` allow, and JSON is parsed as plain data (no NaN, no duplicate keys).
What the entries hold is turned into a program in `pruning.reader.build`.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruning.errors import UnsafeModel

# Entries of an archive written by torch.export.save, relative to its single top folder.
_ALLOWED_ENTRY = re.compile(
    r"^(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[A-Za-z0-9_]+\.json"
    r"|data/weights/[A-Za-z0-9_]+_weights_config\.json|data/weights/weight_[0-9]+"
    r"|data/constants/[A-Za-z0-9_]+_constants_config\.json|data/constants/tensor_[0-9]+"
    r"|data/sample_inputs/[A-Za-z0-9_]+\.pt)$"
)
_TOP_DIR = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

Entries = dict[str, zipfile.ZipInfo]  # entry name below the top folder -> its zip entry


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps that keep a hostile archive from exhausting the machine."""

    max_entries: int = 20_000
    max_total_bytes: int = 8 * 1024**3  # uncompressed, all entries
    max_json_bytes: int = 256 * 1024**2
    max_compression_ratio: float = 200.0  # zip bombs compress far better than weights do
    # Checked on the declared sizes of parameters, buffers and constants, before any payload.
    max_parameters: int | None = None
    # Elements that views may claim beyond the bytes their payloads hold, in all: torch
    # writes an expanded buffer as its small storage with zero strides, but every pruned
    # candidate is written dense, so a 4 KB upload could otherwise declare 10^8 parameters.
    max_expanded_elements: int = 1 << 20


DEFAULT_LIMITS = ArchiveLimits()


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open an upload as a zip file.

    Raises:
        UnsafeModel: it is not one.
    """
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeModel(
            "not a .pt2 archive (not a zip file): save the model with torch.export.save"
        ) from exc


def check_entries(zf: zipfile.ZipFile, limits: ArchiveLimits) -> Entries:
    """Check every entry's name, flags, compression and size.

    Returns:
        The entries by their name below the archive's one top folder.

    Raises:
        UnsafeModel: an entry this reader refuses, or an archive past `limits`.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise UnsafeModel(f"archive has {len(infos)} entries; at most {limits.max_entries} allowed")
    entries: Entries = {}
    tops: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        top, _, rest = name.partition("/")
        if not _TOP_DIR.match(top) or top in (".", "..") or not _ALLOWED_ENTRY.match(rest):
            raise UnsafeModel(f"unexpected entry in archive: {name[:200]!r}")
        if rest in entries:  # zip readers disagree on which copy wins: refuse both
            raise UnsafeModel(f"duplicate entry in archive: {name!r}")
        _check_entry(info, limits)
        total += info.file_size
        tops.add(top)
        entries[rest] = info
    if total > limits.max_total_bytes:
        raise UnsafeModel(f"archive expands to {total} bytes; at most {limits.max_total_bytes}")
    if not tops:
        raise UnsafeModel("the archive is empty: save the model with torch.export.save")
    if len(tops) != 1:
        raise UnsafeModel("a .pt2 archive has exactly one top-level folder")
    return entries


def _check_entry(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise UnsafeModel(f"encrypted entry in archive: {name!r}")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnsafeModel(f"unsupported compression in entry {name!r}")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > 1024**2:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise UnsafeModel(f"entry {name!r} expands {ratio:.0f}x: refused as a zip bomb")


def read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """Read an entry, never more than `cap` bytes nor more than its declared size."""
    limit = min(cap, info.file_size)
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeModel(f"entry {info.filename!r} is larger than it declares or allowed")
    return data


def read_json(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits) -> Any:
    """Parse a JSON entry as plain data: no NaN or Infinity literals, no duplicate keys."""
    raw = read_entry(zf, info, limits.max_json_bytes)
    try:
        # parse_constant refuses NaN/Infinity literals; object_pairs_hook refuses duplicate keys,
        # which different parsers would resolve differently.
        return json.loads(raw, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise UnsafeModel(f"entry {info.filename!r} is not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out
