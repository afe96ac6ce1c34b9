"""Hostile uploads that attack the validator's memory and time, not its safety.

Each builder writes a small file (a few MB at most, built in well under a second) whose
validation would cost gigabytes or minutes in a naive reader: a zip member that inflates a
thousandfold, a header of a hundred thousand columns, a zip directory of 300 000 entries.
`CORPUS` lists them with the outcome the validator must reach: a refusal whose message
matches `expect`, or success ("ok"); and how much memory the validating process may use.

The zips are written byte by byte (`tests.hostile.raw_zips`): deflate bombs of about 1 kB per
MiB, and zip directories without their members' data.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.hostile.raw_zips import MIB, RawEntry, deflate_bomb, npy_header, raw_zip


def npz_bomb(path: Path, rows: int, row_mib: int, fortran: bool = False) -> Path:
    """A small .npz whose x (float64 zeros, `rows` x `row_mib` MiB) inflates a thousandfold."""
    head = npy_header((rows, row_mib * MIB // 8), fortran=fortran)
    data, size, crc = deflate_bomb(head, rows * row_mib)
    path.write_bytes(raw_zip([RawEntry("x.npy", data, size, crc)]))
    return path


def npz_lying_shape(path: Path) -> Path:
    """x.npy declares 500 000 x 1000 float64 (and the zip agrees), but holds 1 MiB of zeros."""
    head = npy_header((500_000, 1000))
    data, _, crc = deflate_bomb(head, 1)
    declared = len(head) + 4 * 10**9  # the 4 GB the header claims (below ZIP64's 4 GiB)
    path.write_bytes(raw_zip([RawEntry("x.npy", data, declared, crc)]))
    return path


def npz_many_dimensions(path: Path) -> Path:
    head = npy_header((2,) + (1,) * 40)
    data, size, crc = deflate_bomb(head + bytes(16), 0)
    path.write_bytes(raw_zip([RawEntry("x.npy", data, size, crc)]))
    return path


def npz_nested_zip(path: Path) -> Path:
    """x.npy is itself a zip (of a bomb): nothing opens zips inside zips."""
    inner = npz_bomb(path.with_suffix(".inner"), 1, 64).read_bytes()
    path.with_suffix(".inner").unlink()
    path.write_bytes(raw_zip([RawEntry("x.npy", inner, len(inner), zlib.crc32(inner), False)]))
    return path


def zip_directory_bomb(path: Path, entries: int, model: bool) -> Path:
    """A zip whose directory lists `entries` names (no data): 300 000 take ~17 MB."""
    graph = RawEntry("m/models/model.json", b"{}", 2, zlib.crc32(b"{}"), False)
    version = RawEntry("m/archive_format", b"pt2", 3, zlib.crc32(b"pt2"), False)
    real = [graph, version] if model else [_small_x()]
    path.write_bytes(raw_zip(real, [f"m/data/{i}" for i in range(entries)]))
    return path


def _small_x() -> RawEntry:
    head = npy_header((2, 2))
    data = head + bytes(32)
    return RawEntry("x.npy", data, len(data), zlib.crc32(data), False)


def csv_header(path: Path, columns: int, distinct: bool, rows: int = 1) -> Path:
    """A header of `columns` names (about 7 bytes each), then `rows` rows of zeros."""
    names = [f"c{i}" for i in range(columns)] if distinct else ["a"] * columns
    with path.open("w") as f:
        f.write(",".join(names) + "\n")
        row = ",".join(["0"] * columns) + "\n"
        for _ in range(rows):
            f.write(row)
    return path


def csv_rows(path: Path, rows: int, columns: int) -> Path:
    """`rows` rows of `columns` zeros: 2 bytes per value."""
    line = ",".join(["0"] * columns) + "\n"
    with path.open("w") as f:
        f.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        block = line * max(1, 4 * MIB // len(line))
        per_block = block.count("\n")
        for _ in range(rows // per_block):
            f.write(block)
        f.write(line * (rows % per_block))
    return path


def csv_endless_line(path: Path, mib: int) -> Path:
    """A header, then one line of `mib` MiB without a line end."""
    with path.open("w") as f:
        f.write("a,b\n")
        for _ in range(mib):
            f.write("1" * MIB)
    return path


def csv_quoted_row(path: Path, cells: int) -> Path:
    """One row spread over `cells` short lines by quoted line ends."""
    path.write_text("a,b\n" + ",".join(['"\n"'] * cells) + "\n")
    return path


def safetensors_header(path: Path, junk_mib: int) -> Path:
    """A valid x, plus a key the format does not use holding `junk_mib` MiB of JSON numbers."""
    x = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    junk = "[" + ",".join(["0"] * (junk_mib * MIB // 2)) + "]"
    header = json.dumps({"x": x}).encode()[:-1] + b', "junk": ' + junk.encode() + b"}"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return path


def safetensors_deep_json(path: Path, depth: int) -> Path:
    header = b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@dataclass(frozen=True)
class HostileDataset:
    name: str
    filename: str
    build: Callable[[Path], Path]  # writes the file at the given path
    expect: str  # "ok", or a regex the refusal's message matches
    kind: str = "dataset"  # or "model_archive"
    max_rss_mb: int = 100  # the validating process's peak resident memory
    max_seconds: float = 15.0


CORPUS = [
    HostileDataset(
        "npz bomb: 8 MB inflating to 2 GiB, beyond the decoded cap",
        "bomb.npz",
        lambda p: npz_bomb(p, 512, 4),
        r"holds 2147483\d+ bytes of arrays; the limit is",
    ),
    HostileDataset(
        "npz bomb: 256 KB inflating to 256 MiB of wide rows, streamed",
        "wide.npz",
        lambda p: npz_bomb(p, 64, 4),
        "ok",
    ),
    HostileDataset(
        "npz bomb in Fortran order: read whole, so capped",
        "fortran.npz",
        lambda p: npz_bomb(p, 300, 1, fortran=True),
        r"Fortran \(column-major\) order .* np.ascontiguousarray\(x\)",
    ),
    HostileDataset(
        ".npy header lying about its shape",
        "liar.npz",
        npz_lying_shape,
        r"holds 4000000000 bytes of arrays; the limit is",
    ),
    HostileDataset(
        ".npy header with 41 dimensions",
        "dims.npz",
        npz_many_dimensions,
        r"x has 41 dimensions; at most 16",
    ),
    HostileDataset(
        "npz whose x.npy is a zip",
        "nested.npz",
        npz_nested_zip,
        r"array 'x' has an unreadable .npy header",
    ),
    HostileDataset(
        "npz with 300 000 directory entries",
        "entries.npz",
        lambda p: zip_directory_bomb(p, 300_000, model=False),
        r"declares 300001 entries; at most 64",
    ),
    HostileDataset(
        "model archive with 300 000 directory entries",
        "entries.pt2",
        lambda p: zip_directory_bomb(p, 300_000, model=True),
        r"declares 300002 entries; at most 65536",
        kind="model_archive",
    ),
    HostileDataset(
        "CSV: a 0.9 MB header of distinct names (linear check)",
        "distinct.csv",
        lambda p: csv_header(p, 120_000, distinct=True, rows=2),
        "ok",
    ),
    HostileDataset(
        "CSV: a 0.9 MB header of one repeated name (linear check)",
        "repeated.csv",
        lambda p: csv_header(p, 450_000, distinct=False, rows=0),
        r"column names must be unique; repeated: \['a'\]",
    ),
    HostileDataset(
        "CSV: 16 MB of wide rows (2000 columns)",
        "wide.csv",
        lambda p: csv_rows(p, 4096, 2000),
        "ok",
    ),
    HostileDataset(
        "CSV: 500 000 short rows",
        "long.csv",
        lambda p: csv_rows(p, 500_000, 2),
        "ok",
        max_seconds=30.0,
    ),
    HostileDataset(
        "CSV: one 32 MiB line",
        "endless.csv",
        lambda p: csv_endless_line(p, 32),
        r"line 2 is longer than 1048576 characters",
    ),
    HostileDataset(
        "CSV: one row spread over 600 000 quoted line ends",
        "quoted.csv",
        lambda p: csv_quoted_row(p, 600_000),
        r"is longer than 1048576 characters",
    ),
    HostileDataset(
        "safetensors: a 64 MiB header under an unknown key",
        "junk.safetensors",
        lambda p: safetensors_header(p, 64),
        r"header claims \d+ bytes; at most 1048576",
    ),
    HostileDataset(
        "safetensors: a small header with an unknown key",
        "extra.safetensors",
        lambda p: safetensors_header(p, 0),
        r"holds tensors other than x and y \('junk'\)",
    ),
    HostileDataset(
        "safetensors: JSON nested 100 000 deep",
        "deep.safetensors",
        lambda p: safetensors_deep_json(p, 100_000),
        r"not valid JSON",
    ),
]
