"""`AsyncClient`: the same calls as `Client`, awaited, against the real service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from deadweight_client import AsyncClient, AsyncJob, NotFound

from tests.client.conftest import API_KEY, FAST_RETRY, Service

pytestmark = pytest.mark.integration


def test_an_async_pipeline(service: Service, uploaded: tuple[str, str], tmp_path: Path) -> None:
    model_id, _ = uploaded
    seen: list[str] = []

    async def on_progress(job: AsyncJob) -> None:
        seen.append(job.status)

    async def pipeline() -> None:
        async with AsyncClient(service.url, API_KEY, retry=FAST_RETRY) as client:
            model = await client.wait_for_model(model_id)
            data = await client.upload_dataset(service.files / "data.npz", label_column=None)
            job = await client.submit(model, data, thresholds=[0.5])
            await job.wait(timeout=240, on_progress=on_progress)
            job.raise_for_status()
            results = await job.results()
            path = await job.download("results.csv", tmp_path / "table.csv")
            rows = path.read_text().count("\n")
            assert rows == len(results["candidates"]) + 2  # and the header, the baseline
            assert {a["name"] for a in await job.artifacts()} >= {"results.json", "pruned-0.pt2"}
            assert job.id in {j.id for j in await client.list_jobs("succeeded")}
            with pytest.raises(NotFound):
                await client.job("no-such-job")

    asyncio.run(pipeline())
    assert seen[-1] == "succeeded"
