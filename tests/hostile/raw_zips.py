"""Zips written byte by byte, where `zipfile` would be slow or would refuse to write them.

Deflate bombs repeat one flushed block of compressed zeros (about 1 kB per MiB), so a file of
a few MB declares gigabytes; zip directories may list entries without their data; `.npy`
headers may declare any shape. The hostile files of `tests.hostile.costly_datasets` are built
from these.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MIB = 1024 * 1024
_ZERO_MIB = bytes(MIB)


@dataclass(frozen=True)
class RawEntry:
    """One zip entry as stored: its data already compressed (deflate) or not (stored)."""

    name: str
    data: bytes
    size: int  # uncompressed bytes, as declared
    crc: int
    deflated: bool = True


def raw_zip(entries: list[RawEntry], directory_only: list[str] | None = None) -> bytes:
    """A zip of `entries`, plus directory records (no data) for each `directory_only` name."""
    out, central = bytearray(), bytearray()
    for entry in entries:
        offset, name = len(out), entry.name.encode()
        method = 8 if entry.deflated else 0
        fields = (20, 0, method, 0, 0, entry.crc, len(entry.data), entry.size, len(name))
        out += struct.pack("<4s5HLLLHH", b"PK\x03\x04", *fields, 0) + name + entry.data
        central += _central_record(fields, name, offset)
    for name_text in directory_only or []:
        name = name_text.encode()
        central += _central_record((20, 0, 0, 0, 0, 0, 0, 0, len(name)), name, 0)
    count = len(entries) + len(directory_only or [])
    zip64 = b""
    if count > 0xFFFF:  # the 16-bit count overflows: ZIP64 records carry the real one
        zip64 = _zip64_end(count, len(central), len(out))
    short = min(count, 0xFFFF)
    eocd = struct.pack("<4s4HLLH", b"PK\x05\x06", 0, 0, short, short, len(central), len(out), 0)
    return bytes(out + central + zip64 + eocd)


def _central_record(fields: tuple[int, ...], name: bytes, offset: int) -> bytes:
    version, flags, method, time, date, crc, csize, size, name_len = fields
    head = struct.pack(
        "<4s6HLLLHHHHHLL", b"PK\x01\x02", 20, version, flags, method, time, date, crc, csize,
        size, name_len, 0, 0, 0, 0, 0, offset,
    )  # fmt: skip
    return head + name


def _zip64_end(count: int, directory_size: int, directory_offset: int) -> bytes:
    """The ZIP64 end record (right after the directory, where zipfile looks) and its locator."""
    record_offset = directory_offset + directory_size
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, directory_size,
        directory_offset,
    )  # fmt: skip
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, record_offset, 1)
    return record + locator


def deflate_bomb(head: bytes, zero_mib: int) -> tuple[bytes, int, int]:
    """`head` then `zero_mib` MiB of zeros, deflated: (compressed, size, crc) in ~1 kB/MiB."""
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = first.compress(head) + first.flush(zlib.Z_FULL_FLUSH)
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = zeros.compress(_ZERO_MIB) + zeros.flush(zlib.Z_FULL_FLUSH)  # no back-references
    crc = zlib.crc32(head)
    for _ in range(zero_mib):
        crc = zlib.crc32(_ZERO_MIB, crc)
    data = body + segment * zero_mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return data, len(head) + zero_mib * MIB, crc


def npy_header(shape: tuple[int, ...], descr: str = "<f8", fortran: bool = False) -> bytes:
    """A version 1.0 .npy header, padded as NumPy pads it."""
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body
