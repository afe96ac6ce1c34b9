"""Validation within limits: bounded memory and time, and every death of the child named.

Every test but the last runs the real child (`python -m jobs.validation_child`), through the
API's entry points (`validate_upload`; `run_validation` for the raw result). Memory is
the child's own peak resident set, which it reports in its result line; time is the parent's
wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest

from jobs.datasets import DatasetFileError
from jobs.validation import run_validation, validate_upload
from jobs.validation_launch import ChildRun, build_request
from jobs.validation_outcome import interpret_run
from jobs.validation_protocol import Outcome
from tests.hostile.costly_datasets import CORPUS, HostileDataset, npz_bomb
from tests.hostile.raw_zips import MIB
from tests.jobs.validation_helpers import GIB, validation_settings


@pytest.mark.parametrize("hostile", CORPUS, ids=lambda h: h.filename)
def test_hostile_upload_is_decided_in_bounded_memory_and_time(
    tmp_path: Path, hostile: HostileDataset
) -> None:
    path = hostile.build(tmp_path / hostile.filename)
    settings = validation_settings(tmp_path)
    request = build_request(hostile.kind, path, hostile.filename, None, settings)
    start = time.monotonic()
    result = asyncio.run(run_validation(request, settings))
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


def test_running_out_of_memory_is_a_refusal_that_names_the_limit(tmp_path: Path) -> None:
    # A Fortran-order member is read whole: 200 MiB does not fit in 256 MiB of address space.
    path = npz_bomb(tmp_path / "blob", 200, 1, fortran=True)
    settings = validation_settings(tmp_path, validation_memory_bytes=256 * MIB)
    with pytest.raises(DatasetFileError) as err:
        asyncio.run(validate_upload("dataset", path, "big.npz", None, settings))
    message = str(err.value)
    assert message.startswith("big.npz needs more than 268435456 bytes (0.25 GiB) of memory")
    assert "DEADWEIGHT_VALIDATION_MEMORY_BYTES" in message and str(tmp_path) not in message
    # The same file passes with the default limit.
    asyncio.run(validate_upload("dataset", path, "big.npz", None, validation_settings(tmp_path)))


def test_a_validation_past_its_time_is_killed_and_refused(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "blob", 512, 4)  # 2 GiB of zeros to inflate and check
    settings = validation_settings(tmp_path, validation_seconds=1, max_upload_bytes=GIB)
    start = time.monotonic()
    with pytest.raises(DatasetFileError, match=r"^validating bomb.npz took longer than 1 s"):
        asyncio.run(validate_upload("dataset", path, "bomb.npz", None, settings))
    assert time.monotonic() - start < 5


def test_a_crash_is_a_refusal_whose_details_stay_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "blobs" / "gone"
    with (
        caplog.at_level(logging.ERROR, logger="jobs.validation_outcome"),
        pytest.raises(DatasetFileError) as err,
    ):
        asyncio.run(
            validate_upload("dataset", missing, "d.csv", None, validation_settings(tmp_path))
        )
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
    settings = validation_settings(tmp_path)
    request = build_request("dataset", tmp_path / "blob", "d.npz", None, settings)
    result = interpret_run(request, ChildRun(code, b"", b"a traceback", timed_out, 1.0), settings)
    assert result.outcome is Outcome.REFUSED and result.message is not None
    assert expected in result.message and "traceback" not in result.message
