"""Upload validation in a limited child: typed outcomes, bounded memory and time, deaths named.

Every test runs the real child (`python -m jobs.validation`). Memory is the child's own peak
resident set, which it reports in its result line; time is the parent's wall clock.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.archive_check import (
    BadZipDirectory,
    InvalidArchive,
    check_zip_directory,
    read_zip_directory,
)
from jobs.datasets import InvalidDataset
from jobs.settings import Settings
from jobs.validation import (
    Outcome,
    ValidationBusy,
    ValidationRequest,
    _ChildRun,
    _result,
    build_request,
    child_env,
    run_validation_sync,
    validate_upload,
    validate_upload_sync,
)
from tests.hostile_datasets import CORPUS, MIB, HostileDataset, npz_bomb

GIB = 1024 * MIB


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "max_upload_bytes": 64 * MIB,  # decoded arrays: at most 512 MiB
        "validation_memory_bytes": GIB,
        "validation_seconds": 30,
    }
    return Settings(**(values | overrides))


@pytest.mark.parametrize("hostile", CORPUS, ids=lambda h: h.filename)
def test_hostile_upload_is_decided_in_bounded_memory_and_time(
    tmp_path: Path, hostile: HostileDataset
) -> None:
    path = hostile.build(tmp_path / hostile.filename)
    settings = _settings(tmp_path)
    request = build_request(hostile.kind, path, hostile.filename, None, settings)
    start = time.monotonic()
    result = run_validation_sync(request, settings)
    elapsed = time.monotonic() - start
    if hostile.expect == "ok":
        assert result.outcome is Outcome.OK, result.message
    else:
        assert result.outcome is Outcome.REFUSED
        assert result.message is not None and re.search(hostile.expect, result.message), (
            result.message
        )
        assert str(tmp_path) not in result.message
    peak_mb = result.peak_rss_bytes / MIB
    assert 0 < peak_mb < hostile.max_rss_mb, f"{hostile.name}: peak {peak_mb:.0f} MiB"
    assert elapsed < hostile.max_seconds, f"{hostile.name}: {elapsed:.1f} s"


def test_a_dataset_is_described_and_a_bad_one_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    good = tmp_path / "blob-1"
    np.savez(good, x=np.ones((5, 3), np.float32), y=np.arange(5))
    info = validate_upload_sync("dataset", good.with_suffix(".npz"), "d.npz", None, settings)
    assert (info["format"], info["samples"], info["x_shape"], info["y_kind"]) == (
        "npz",
        5,
        [3],
        "class",
    )
    csv = tmp_path / "blob-2"
    csv.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(InvalidDataset, match=r"^d.csv line 3, column 'b': 'x' is not a number"):
        validate_upload_sync("dataset", csv, "d.csv", None, settings)
    # The feature limit is the server's setting, checked before any value is read.
    small = _settings(tmp_path, max_features=2)
    with pytest.raises(InvalidDataset, match=r"has 3 values per sample; .* at most 2"):
        validate_upload_sync("dataset", good.with_suffix(".npz"), "d.npz", None, small)


def test_a_label_column_is_passed_to_the_child(tmp_path: Path) -> None:
    csv = tmp_path / "blob"
    csv.write_text("a,label\n1,0\n2,1\n")
    info = validate_upload_sync("dataset", csv, "d.csv", "label", _settings(tmp_path))
    assert (info["label_column"], info["x_shape"], info["y_kind"]) == ("label", [1], "class")


def test_model_archives(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = tmp_path / "blob"
    path.write_bytes(_zip({"m/models/model.json": b"{}", "m/archive_format": b"pt2"}))
    assert validate_upload_sync("model_archive", path, "m.pt2", None, settings) == {}
    for files, reason in [
        ({"m/models/model.json": b"{}"}, "no archive_format entry"),
        ({"a/models/x.json": b"{}", "b/models/y.json": b"{}"}, "exactly one .* found 2"),
    ]:
        path.write_bytes(_zip(files))
        with pytest.raises(InvalidArchive, match=reason):
            validate_upload_sync("model_archive", path, "m.pt2", None, settings)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(InvalidArchive, match="not a zip file"):
        validate_upload_sync("model_archive", path, "m.pt2", None, settings)


def test_a_real_torch_export_archive_passes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from tests.tiny_models import MLP, export_to

    path = export_to(MLP(), tmp_path / "m.pt2")
    with path.open("rb") as f:  # the EOCD reader agrees with zipfile on torch's writer
        directory = read_zip_directory(f, path.stat().st_size)
    assert directory.entries == len(zipfile.ZipFile(path).infolist())
    assert validate_upload_sync("model_archive", path, "m.pt2", None, _settings(tmp_path)) == {}


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


def test_running_out_of_memory_is_a_refusal_that_names_the_limit(tmp_path: Path) -> None:
    # A Fortran-order member is read whole: 200 MiB does not fit in 256 MiB of address space.
    path = npz_bomb(tmp_path / "blob", 200, 1, fortran=True)
    settings = _settings(tmp_path, validation_memory_bytes=256 * MIB)
    with pytest.raises(InvalidDataset) as err:
        validate_upload_sync("dataset", path, "big.npz", None, settings)
    message = str(err.value)
    assert message.startswith("big.npz needs more than 268435456 bytes (0.25 GiB) of memory")
    assert "DEADWEIGHT_VALIDATION_MEMORY_BYTES" in message and str(tmp_path) not in message
    # The same file passes with the default limit.
    validate_upload_sync("dataset", path, "big.npz", None, _settings(tmp_path))


def test_a_validation_past_its_time_is_killed_and_refused(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "blob", 512, 4)  # 2 GiB of zeros to inflate and check
    settings = _settings(tmp_path, validation_seconds=1, max_upload_bytes=GIB)
    start = time.monotonic()
    with pytest.raises(InvalidDataset, match=r"^validating bomb.npz took longer than 1 s"):
        validate_upload_sync("dataset", path, "bomb.npz", None, settings)
    assert time.monotonic() - start < 5


def test_a_crash_is_a_refusal_whose_details_stay_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "blobs" / "gone"
    with (
        caplog.at_level(logging.ERROR, logger="jobs.validation"),
        pytest.raises(InvalidDataset) as err,
    ):
        validate_upload_sync("dataset", missing, "d.csv", None, _settings(tmp_path))
    assert str(err.value).startswith("d.csv could not be validated")
    assert str(tmp_path) not in str(err.value)
    assert "FileNotFoundError" in caplog.text and str(missing) in caplog.text


@pytest.mark.parametrize(
    ("code", "timed_out", "expected"),
    [
        (-9, False, "needs more than 1073741824 bytes"),  # the kernel's OOM killer
        (-6, False, "needs more than 1073741824 bytes"),  # Python aborting out of memory
        (-24, False, "took longer than 30 s"),  # SIGXCPU: the CPU limit
        (None, True, "took longer than 30 s"),
        (-11, False, "stopped with SIGSEGV"),
        (1, False, "could not be validated"),
    ],
)
def test_a_dead_child_becomes_a_refusal(
    tmp_path: Path, code: int | None, timed_out: bool, expected: str
) -> None:
    settings = _settings(tmp_path)
    request = build_request("dataset", tmp_path / "blob", "d.npz", None, settings)
    result = _result(request, _ChildRun(code, b"", b"a traceback", timed_out, 1.0), settings)
    assert result.outcome is Outcome.REFUSED and result.message is not None
    assert expected in result.message and "traceback" not in result.message


def test_the_child_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEADWEIGHT_API_KEYS", "t=secret")
    monkeypatch.setenv("DEADWEIGHT_DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    env = child_env()
    assert not [k for k in env if k.startswith(("DEADWEIGHT_", "AWS_"))]
    assert env["OMP_NUM_THREADS"] == "1" and "PYTHONPATH" in env


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found.update(int(pid) for pid in text.split())
    return found


async def _watch_children(stop: asyncio.Event, seen: list[int]) -> None:
    while not stop.is_set():
        seen.append(len(_children()))
        await asyncio.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_at_most_validation_concurrency_children_run_at_once(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "blob", 512, 4)  # each is killed after its 1 s
    settings = _settings(
        tmp_path, validation_seconds=1, validation_concurrency=1, max_upload_bytes=GIB
    )

    async def main() -> tuple[list[BaseException | dict[str, Any]], list[int]]:
        stop, seen = asyncio.Event(), []
        watcher = asyncio.create_task(_watch_children(stop, seen))
        outcomes = await asyncio.gather(
            *(validate_upload("dataset", path, "b.npz", None, settings) for _ in range(3)),
            return_exceptions=True,
        )
        stop.set()
        await watcher
        return outcomes, seen

    start = time.monotonic()
    outcomes, seen = asyncio.run(main())
    assert time.monotonic() - start >= 1
    assert max(seen) == 1
    # The first runs; a later one waits at most one validation's time for its turn, so an
    # upload's hold on its blob stays within what the reaper allows.
    assert isinstance(outcomes[0], InvalidDataset) and "took longer" in str(outcomes[0])
    busy = [o for o in outcomes if isinstance(o, ValidationBusy)]
    assert busy and all("waited 1 s for its turn" in str(o) for o in busy)
    assert all(isinstance(o, (InvalidDataset, ValidationBusy)) for o in outcomes)


def test_a_cancelled_validation_kills_its_child(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "blob", 512, 4)
    settings = _settings(tmp_path, max_upload_bytes=GIB)

    async def main() -> set[int]:
        task = asyncio.create_task(validate_upload("dataset", path, "b.npz", None, settings))
        while not _children():
            await asyncio.sleep(0.02)
        running = _children()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running

    running = asyncio.run(main())
    for pid in running:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie_free(pid)


def _is_zombie_free(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


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
