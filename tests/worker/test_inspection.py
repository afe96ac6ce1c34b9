"""Inspecting an uploaded model in the sandbox: ready or invalid, fair turns, a time limit."""

from __future__ import annotations

import time
from pathlib import Path

from jobs.settings import Settings
from jobs.states import ModelStatus
from tests.worker.world import TENANT, World
from worker.inspection import execute_inspection


def test_inspection_marks_models_ready_or_invalid(
    world: World, model_file: Path, tmp_path: Path
) -> None:
    good = world.model(model_file)
    execute_inspection(good, world.store, world.blobs, world.settings)
    record = world.store.models.get(TENANT, good)
    assert record is not None and record.status is ModelStatus.READY
    assert record.info is not None
    assert record.info["layers"] == [{"name": "fc1", "width": 16, "kind": "linear"}]
    assert record.info["inputs"] == [{"name": "x", "shape": [None, 5], "dtype": "float32"}]

    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"PK\x03\x04 broken")
    bad = world.model(junk)
    execute_inspection(bad, world.store, world.blobs, world.settings)
    record = world.store.models.get(TENANT, bad)
    assert record is not None and record.status is ModelStatus.INVALID and record.error


def test_an_inspection_message_serves_the_tenant_waiting_longest(
    world: World, model_file: Path
) -> None:
    # One tenant uploaded a backlog; its first model is being inspected right now.
    sha, size = world.blobs.put_file(model_file)
    backlog = [world.store.models.add("busy", sha, size, f"{i}.pt2").id for i in range(3)]
    assert world.store.scheduling.claim_fair_inspection(backlog[0], 600) is not None
    newcomer = world.store.models.add("quiet", sha, size, "q.pt2").id
    # The next message names busy's second model; quiet's first one goes first.
    execute_inspection(backlog[1], world.store, world.blobs, world.settings)
    inspected = world.store.models.get("quiet", newcomer)
    assert inspected is not None and inspected.status is ModelStatus.READY
    waiting = world.store.models.get("busy", backlog[1])
    assert waiting is not None and waiting.status is ModelStatus.PENDING


def test_an_inspection_has_a_time_limit_of_its_own(world: World, model_file: Path) -> None:
    # One second is less than the engine needs to import torch: the limit strikes.
    world.settings = Settings(data_dir=world.root, inspection_time_limit=1, device="cpu")
    model_id = world.model(model_file)
    started = time.monotonic()
    execute_inspection(model_id, world.store, world.blobs, world.settings)
    assert time.monotonic() - started < 30
    record = world.store.models.get(TENANT, model_id)
    assert record is not None and record.status is ModelStatus.INVALID
    assert record.error == (
        "the model took longer than 1 s to inspect (DEADWEIGHT_INSPECTION_TIME_LIMIT); "
        "a model this costly to read is refused"
    )
    assert list(world.blobs.tmp_dir.glob(".inspect-*")) == []
