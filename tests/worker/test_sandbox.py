"""The engine's child process: limits, environment, working directory, and how it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import JobConfig
from jobs.settings import GIB
from tests.tiny_models import export_to
from tests.worker.world import assert_engine_limits
from worker.lease import LeaseLost
from worker.protocol import DatasetSpec, InspectRequest, JobRequest, SelfCheckRequest
from worker.sandbox import (
    EngineCrashed,
    EngineInternalError,
    EngineRefused,
    EngineTimedOut,
    Limits,
    SandboxFailure,
    engine_env,
    run_sandboxed,
)


def test_the_child_has_its_limits_its_directory_and_no_service_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEADWEIGHT_API_KEYS", "team=secret-key")
    monkeypatch.setenv("DEADWEIGHT_DATABASE_URL", "postgresql+psycopg://u:password@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-child")
    work = tmp_path / "work"
    seen = run_sandboxed(SelfCheckRequest(), work, Limits(3 * GIB, 120))
    assert not [k for k in seen["env"] if k.startswith("DEADWEIGHT_") or k.startswith("AWS_")]
    assert Path(seen["cwd"]) == work.resolve()
    assert_engine_limits(seen, 3 * GIB, 120)


def test_engine_env_is_an_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("DEADWEIGHT_BROKER_URL", "redis://:password@broker/0")
    env = engine_env(tmp_path)
    assert env["OMP_NUM_THREADS"] == "3" and env["HOME"] == str(tmp_path)
    assert env["TMPDIR"] == str(tmp_path / "tmp") and (tmp_path / "tmp").is_dir()
    assert "DEADWEIGHT_BROKER_URL" not in env and env["PATH"] == os.environ["PATH"]


class Outer(nn.Module):
    """Each sample's 4096 features become a 4096 x 4096 outer product: 64 MiB per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 4096)
        self.out = nn.Linear(4096, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(x))
        return self.out((h.unsqueeze(2) * h.unsqueeze(1)).mean(2))


def _job(tmp_path: Path, model: Path, samples: int, batch_size: int) -> JobRequest:
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 5)).astype(np.float32)
    np.savez(data, x=x, y=rng.integers(0, 3, size=samples))
    out = tmp_path / "out"
    out.mkdir()
    spec = DatasetSpec(path=str(data), format="npz", label_column=None, name="data.npz")
    return JobRequest(
        model=str(model), data=spec, eval_data=None,
        config=JobConfig.from_json({"criterion": "variance", "thresholds": [{"fraction": 0.5}]}),
        batch_size=batch_size, device="cpu", out_dir=str(out),
    )  # fmt: skip


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="no address-space limit with CUDA")
def test_a_job_past_its_memory_limit_fails_with_that_reason(tmp_path: Path) -> None:
    model = export_to(Outer(), tmp_path / "outer.pt2", d_in=5)
    request = _job(tmp_path, model, samples=64, batch_size=64)  # 4 GiB for one batch
    with pytest.raises(EngineRefused, match="ran out of memory within its limit"):
        run_sandboxed(request, tmp_path / "work", Limits(2 * GIB, 600))


def test_a_job_past_its_cpu_limit_fails_with_that_reason(tmp_path: Path) -> None:
    model = export_to(Outer(), tmp_path / "outer.pt2", d_in=5)
    request = _job(tmp_path, model, samples=4000, batch_size=4)  # minutes of CPU
    with pytest.raises(SandboxFailure, match="CPU time limit"):
        run_sandboxed(request, tmp_path / "work", Limits(0, 3))


def test_a_refused_model_fails_with_the_readers_reason(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(EngineRefused, match="not a zip"):
        run_sandboxed(InspectRequest(model=str(junk)), tmp_path / "w", Limits(0, 60))


def test_a_native_crash_is_a_crash_not_a_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DW_TEST_ENGINE_CRASH", "start")  # a real SIGSEGV, first thing
    with pytest.raises(EngineCrashed) as caught:
        run_sandboxed(InspectRequest(model="x"), tmp_path / "w", Limits(0, 60))
    message = str(caught.value)
    assert message.startswith("the engine crashed (SIGSEGV) while inspecting the model")
    assert "memory" not in message and "incident" in message


def test_an_unexpected_exception_becomes_an_incident(tmp_path: Path) -> None:
    # A request the engine does not know: its refusal to decode it is unexpected there.
    unknown = replace(SelfCheckRequest(), kind="no such kind")  # type: ignore[arg-type]
    with pytest.raises(EngineInternalError) as caught:
        run_sandboxed(unknown, tmp_path / "w", Limits(0, 60))
    assert "no such kind" not in str(caught.value)  # only in the log
    assert "no such kind" in caught.value.detail and caught.value.incident in str(caught.value)


def test_the_wall_clock_limit_kills_the_child(tmp_path: Path) -> None:
    model = export_to(Outer(), tmp_path / "outer.pt2", d_in=5)
    started = time.monotonic()
    with pytest.raises(EngineTimedOut):  # importing torch alone takes longer
        run_sandboxed(
            InspectRequest(model=str(model)),
            tmp_path / "w",
            Limits(0, 60, wall_seconds=0.5),
        )
    assert time.monotonic() - started < 10


def test_the_cli_reports_a_native_crash_in_one_line(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    torch.manual_seed(0)
    model = export_to(Outer(), files / "model.pt2", d_in=5)
    np.savez(files / "data.npz", x=np.ones((8, 5), np.float32))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    env["DW_TEST_ENGINE_CRASH"] = "statistics"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("deadweight")), "prune", str(model),
         str(files / "data.npz"), "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "deadweight: error: the engine crashed (SIGSEGV) while computing statistics"
    )
    assert result.stdout == ""


def _engine_children() -> list[int]:
    """This process's children that run the engine (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == os.getpid() and b"worker.engine_process" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_watch_that_raises_kills_the_child_and_its_error_propagates(tmp_path: Path) -> None:
    model = export_to(Outer(), tmp_path / "outer.pt2", d_in=5)
    request = _job(tmp_path, model, samples=4000, batch_size=4)  # minutes of CPU
    calls: list[float] = []

    def watch() -> None:
        calls.append(time.monotonic())
        if len(calls) > 8:  # about two seconds in: the engine is at work
            raise LeaseLost("job")

    with pytest.raises(LeaseLost):
        run_sandboxed(request, tmp_path / "work", Limits(0, 600), watches=[watch])
    assert calls[-1] - calls[0] < 10
    assert _engine_children() == []  # killed and reaped
