"""The warm engine of a worker process (`worker.sandbox.standby`): the same sandbox as a
fresh engine (limits, directory, environment), one request each, a fresh one without it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.settings import GIB
from tests.tiny_models import export_to
from tests.worker.world import Net, assert_engine_limits
from worker.protocol import InspectRequest, SelfCheckRequest
from worker.sandbox import EngineCrashed, Limits, run_sandboxed, standby


@pytest.fixture(autouse=True)
def _no_standby_left() -> Iterator[None]:
    yield
    standby.discard()


def _waiting_folder(root: Path) -> Path:
    (folder,) = root.glob(f"{standby.STANDBY_PREFIX}*")
    return folder


def test_a_standby_engine_takes_the_requests_limits_directory_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEADWEIGHT_DATABASE_URL", "postgresql+psycopg://u:password@db/x")
    standby.prepare(tmp_path / "tmp")
    waited_in = _waiting_folder(tmp_path / "tmp")
    work = tmp_path / "work"
    seen = run_sandboxed(SelfCheckRequest(), work, Limits(3 * GIB, 120, file_bytes=GIB))
    assert not [k for k in seen["env"] if k.startswith("DEADWEIGHT_")]
    assert Path(seen["cwd"]) == work.resolve()
    assert seen["home"] == str(work) and seen["tmpdir"] == str(work / "tmp")
    assert_engine_limits(seen, 3 * GIB, 120)
    assert not waited_in.exists()  # the folder it waited in went with its orders


def test_engines_fresh_or_standby_run_at_the_niceness_they_are_given(tmp_path: Path) -> None:
    """The worker's engines yield to the API on a shared machine (`ENGINE_NICE`)."""
    expected = min(os.nice(0) + 5, 19)
    fresh = run_sandboxed(SelfCheckRequest(), tmp_path / "fresh", Limits(0, 60, nice=5))
    assert fresh["nice"] == expected
    standby.prepare(tmp_path / "tmp", nice=5)
    warm = run_sandboxed(SelfCheckRequest(), tmp_path / "warm", Limits(0, 60, nice=5))
    assert warm["nice"] == expected  # once, at its start: the orders add nothing more
    assert os.nice(0) < expected or expected == 19  # the worker keeps its own


def test_a_standby_serves_one_request_then_engines_start_fresh(tmp_path: Path) -> None:
    standby.prepare(tmp_path / "tmp")
    first = standby.hand_over(tmp_path / "w1", Limits(0, 60))
    assert first is not None
    assert standby.hand_over(tmp_path / "w2", Limits(0, 60)) is None
    first.kill()
    first.wait()
    seen = run_sandboxed(SelfCheckRequest(), tmp_path / "w3", Limits(0, 60))
    assert Path(seen["cwd"]) == (tmp_path / "w3").resolve()


def test_a_standby_that_died_while_waiting_is_replaced_by_a_fresh_engine(
    tmp_path: Path,
) -> None:
    standby.prepare(tmp_path / "tmp")
    waited_in = _waiting_folder(tmp_path / "tmp")
    waiting = standby._waiting[0].proc
    waiting.kill()
    waiting.wait()
    model = export_to(Net(), tmp_path / "net.pt2", d_in=5)
    info = run_sandboxed(InspectRequest(model=str(model)), tmp_path / "w", Limits(0, 120))
    assert info["inputs"]
    assert not waited_in.exists()


def test_a_crash_in_a_standby_engine_is_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DW_TEST_ENGINE_CRASH", "start")  # read by the engine after its orders
    standby.prepare(tmp_path / "tmp")
    with pytest.raises(EngineCrashed):
        run_sandboxed(InspectRequest(model="x"), tmp_path / "w", Limits(0, 60))


def test_a_standby_whose_worker_never_asks_exits(tmp_path: Path) -> None:
    standby.prepare(tmp_path / "tmp")
    waiting = standby._waiting[0].proc
    assert waiting.stdin is not None
    waiting.stdin.close()  # the worker went without a request
    assert waiting.wait(timeout=120) == 0
