"""The validation children as processes: their environment, how many run, how they end.

Every test runs the real child (`python -m jobs.validation_child`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.datasets import DatasetFileError
from jobs.validation import ValidationBusy, validate_upload
from jobs.validation_launch import validation_env
from tests.hostile.costly_datasets import npz_bomb
from tests.jobs.validation_helpers import GIB, validation_settings


def test_the_child_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEADWEIGHT_API_KEYS", "t=secret")
    monkeypatch.setenv("DEADWEIGHT_DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    env = validation_env()
    assert not [k for k in env if k.startswith(("DEADWEIGHT_", "AWS_"))]
    assert env["OMP_NUM_THREADS"] == "1" and "PYTHONPATH" in env


def _children() -> set[int]:
    """This process's validation children (not the servers other tests of the same session
    keep running beside it)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found.update(int(pid) for pid in text.split() if _is_validation_child(int(pid)))
    return found


def _is_validation_child(pid: int) -> bool:
    try:
        return b"jobs.validation_child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended meanwhile
        return False


async def _watch_children(stop: asyncio.Event, seen: list[int]) -> None:
    while not stop.is_set():
        seen.append(len(_children()))
        await asyncio.sleep(0.02)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_at_most_validation_concurrency_children_run_at_once(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "blob", 512, 4)  # each is killed after its 1 s
    settings = validation_settings(
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
    assert isinstance(outcomes[0], DatasetFileError) and "took longer" in str(outcomes[0])
    busy = [o for o in outcomes if isinstance(o, ValidationBusy)]
    assert busy and all("waited 1 s for its turn" in str(o) for o in busy)
    assert all(isinstance(o, (DatasetFileError, ValidationBusy)) for o in outcomes)


def test_a_cancelled_validation_kills_its_child(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "blob", 512, 4)
    settings = validation_settings(tmp_path, max_upload_bytes=GIB)

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
