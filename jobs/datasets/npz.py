""".npz: a zip of .npy members x and optional y, as np.savez writes it.

Nothing is unpickled: each member is read as a raw .npy stream whose header (a literal dict)
is checked first. Members are decompressed as a stream, batch by batch; the one exception is
a member saved in Fortran order, which scatters each row across the array and is read whole.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from jobs.archive_check import BadZipDirectory, check_zip_directory
from jobs.datasets.arrays import (
    ArrayDataset,
    ArraySpec,
    RowReader,
    check_bytes,
    describe_arrays,
    read_array,
    read_exact,
)
from jobs.datasets.base import Dataset, DatasetFileError, DatasetFormat

_NPY_MAX_HEADER: Final = 10_000
# np.savez writes one entry per array: x, y and a few more are all a dataset holds. Checked
# from the End Of Central Directory record, before zipfile parses (and allocates) anything.
NPZ_MAX_ENTRIES: Final = 64
NPZ_MAX_DIRECTORY_BYTES: Final = 64 * 1024
# A Fortran-order member scatters every row across the whole array, so it is read whole.
MAX_FORTRAN_BYTES: Final = 256 * 1024 * 1024


@contextmanager
def _zip_errors(name: str) -> Iterator[None]:
    try:
        yield
    except DatasetFileError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise DatasetFileError(f"{name} is not a readable .npz (zip) file: {exc}") from None


def open_npz(
    path: Path,
    name: str,
    max_samples: int | None,
    max_bytes: int | None,
    max_features: int | None = None,
) -> Dataset:
    with _zip_errors(name):
        try:
            check_zip_directory(path, NPZ_MAX_ENTRIES, NPZ_MAX_DIRECTORY_BYTES)
        except BadZipDirectory as exc:
            raise DatasetFileError(
                f"{name} is not a readable .npz: {exc} (np.savez writes one per array)"
            ) from None
        zf = zipfile.ZipFile(path)
    try:
        with _zip_errors(name):
            x_member = _npz_member(zf, "x")
            if x_member is None:
                raise DatasetFileError(
                    f"{name} has no array 'x': save features as x (and labels as y) with np.savez"
                )
            y_member = _npz_member(zf, "y")
            x, x_start = _npy_header(zf, x_member, name, "x")
            y, y_start = (None, 0) if y_member is None else _npy_header(zf, y_member, name, "y")
        check_bytes(name, x, y, max_bytes)
        info = describe_arrays(name, DatasetFormat.NPZ, x, y, max_samples, max_features)
        for spec in (x, y):
            _check_fortran(name, spec)
    except BaseException:
        zf.close()
        raise

    @contextmanager
    def readers() -> Iterator[tuple[RowReader, RowReader | None]]:
        with _zip_errors(name), zf.open(x_member) as xs:
            if y_member is None or y is None:
                yield _npy_rows(xs, x_start, x), None
                return
            with zf.open(y_member) as ys:
                yield _npy_rows(xs, x_start, x), _npy_rows(ys, y_start, y)

    return ArrayDataset(info, name, x, y, readers, zf.close)


def _npz_member(zf: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
    for candidate in (f"{key}.npy", key):
        try:
            return zf.getinfo(candidate)
        except KeyError:
            continue
    return None


def _npy_header(
    zf: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, key: str
) -> tuple[ArraySpec, int]:
    """Parse a member's .npy header (a literal dict, never unpickled) and check its size."""
    fmt = np.lib.format
    with zf.open(member) as stream:
        try:
            version = fmt.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(stream, _NPY_MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(stream, _NPY_MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, TypeError, SyntaxError) as exc:
            raise DatasetFileError(
                f"{name}: array '{key}' has an unreadable .npy header: {exc}"
            ) from None
        start = stream.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise DatasetFileError(
            f"{name}: array '{key}' holds Python objects or records ({dtype}); "
            "save a plain numeric array (pickled data is never loaded)"
        )
    kind = {"b": "b", "i": "i", "u": "u", "f": "f"}.get(dtype.kind, "?")
    read = np.dtype(np.uint8) if kind == "b" else dtype
    spec = ArraySpec(key, tuple(shape), read, kind, str(dtype), bool(fortran))
    if kind != "?" and member.file_size != start + spec.nbytes:
        raise DatasetFileError(f"{name}: array '{key}' is truncated or corrupt: save it again")
    return spec, start


def _check_fortran(name: str, spec: ArraySpec | None) -> None:
    if spec is not None and spec.fortran and spec.nbytes > MAX_FORTRAN_BYTES:
        raise DatasetFileError(
            f"{name}: array '{spec.key}' is stored in Fortran (column-major) order and holds "
            f"{spec.nbytes} bytes; such arrays are read whole, so at most {MAX_FORTRAN_BYTES} "
            f"bytes: save np.ascontiguousarray({spec.key}) instead"
        )


def _npy_rows(stream: IO[bytes], start: int, spec: ArraySpec) -> RowReader:
    read_exact(stream, start)  # skip the header: zip members only stream forwards
    row_items = math.prod(spec.row_shape)
    if not spec.fortran:
        return lambda count: read_array(stream, count * row_items, spec.dtype).reshape(
            count, *spec.row_shape
        )
    # Fortran order scatters each row across the whole array: read it once, whole.
    whole = read_array(stream, math.prod(spec.shape), spec.dtype)
    array = whole.reshape(spec.shape, order="F")
    position = 0

    def read(count: int) -> npt.NDArray[Any]:
        nonlocal position
        position += count
        return array[position - count : position]

    return read
