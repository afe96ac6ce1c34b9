"""A submitted job, as `Client.submit` returns it: poll it, wait for it, fetch what it
published. `AsyncJob` is the same for `AsyncClient`; what they share (the record's fields,
progress reports, which file "recommended" means) lives in `JobView`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadweight_client import calls
from deadweight_client.errors import JobFailed, NoRecommendation
from deadweight_client.files import download_target, partial_file
from deadweight_client.polling import Poll
from deadweight_client.records import TERMINAL_STATUSES, Artifact, JobRecord, Progress, Results

if TYPE_CHECKING:
    from deadweight_client.async_client import AsyncClient
    from deadweight_client.client import Client

RECOMMENDED = "recommended"
DOWNLOAD_CHUNK = 1 << 20


class JobView:
    """The latest record of a job, as last fetched (`refresh` fetches it again)."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self._reported: tuple[str, str, float] | None = None

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or cancelled."""
        return self.record["status"]

    @property
    def progress(self) -> Progress:
        return self.record.get("progress") or Progress(stage="", fraction=0.0)

    @property
    def error(self) -> str | None:
        """Why the job failed (what to change, or what happened), else None."""
        return self.record.get("error")

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> None:
        """Raises:
        JobFailed: the job ended failed or cancelled (its `error` is the message)."""
        if self.status in {"failed", "cancelled"}:
            raise JobFailed(self.id, self.status, self.error or f"job {self.id} {self.status}")

    def _poll(self, timeout: float | None, interval: float) -> Poll:
        return Poll(f"job {self.id}", timeout, interval)

    def _changed(self) -> bool:
        """Whether status or progress moved since the last report (each change once)."""
        seen = (self.status, self.progress["stage"], self.progress["fraction"])
        changed, self._reported = seen != self._reported, seen
        return changed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"


def recommended_artifact(results: Results) -> str:
    """The file of the candidate a job recommends.

    Raises:
        NoRecommendation: no candidate stayed within the job's `max_metric_drop`.
    """
    index = results.get("recommended")
    if index is None:
        raise NoRecommendation(
            "no candidate stays within the job's max_metric_drop; pick one from results() "
            "and download it by name, or resubmit with a larger max_metric_drop"
        )
    return str(results["candidates"][index]["artifact"])


class Job(JobView):
    """A job of a `Client`."""

    def __init__(self, client: Client, record: JobRecord) -> None:
        super().__init__(record)
        self._client = client

    def refresh(self) -> Job:
        """Fetch the job's record again; returns this job."""
        self.record = self._client._json(calls.get("jobs", self.id))
        return self

    def wait(
        self,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
        interval: float = 2.0,
    ) -> Job:
        """Poll until the job has finished (whatever its end); returns this job.

        Args:
            timeout: seconds to wait; None: as long as it takes.
            on_progress: called with this job whenever its status or progress changed.
            interval: the slowest pace of polling, in seconds.

        Raises:
            WaitTimeout: still running after `timeout` (the job runs on).
        """
        poll = self._poll(timeout, interval)
        while True:
            if on_progress is not None and self._changed():
                on_progress(self)
            if self.done:
                return self
            poll.sleep_sync(self.status)
            self.refresh()

    def results(self) -> Results:
        """The results table (`results.json`). Raises Conflict (`not_ready`) unless the job
        succeeded; its message says why (a failed job's error)."""
        results: Results = self._client._json(calls.job_part(self.id, "results"))
        return results

    def stats(self) -> dict[str, Any]:
        """Per-neuron statistics of every prunable layer (`stats.json`)."""
        stats: dict[str, Any] = self._client._json(calls.job_part(self.id, "stats"))
        return stats

    def artifacts(self) -> list[Artifact]:
        """The files the job published."""
        artifacts: list[Artifact] = self._client._json(calls.job_part(self.id, "artifacts"))
        return artifacts

    def download(self, name: str = RECOMMENDED, path: str | Path = ".") -> Path:
        """Download one published file, streamed to disk; returns where it was written.

        Args:
            name: a file's name (`pruned-3.pt2`, `results.csv`, ...), or `recommended`: the
                pruned model of the recommended candidate.
            path: a folder (the file keeps its name) or a file path.

        Raises:
            NoRecommendation: `recommended` asked of a job that recommends nothing.
        """
        if name == RECOMMENDED:
            name = recommended_artifact(self.results())
        target = download_target(path, name)
        call = calls.job_part(self.id, f"artifacts/{name}", stream=True)
        with self._client._stream(call) as r, partial_file(target) as out:
            for chunk in r.iter_bytes(DOWNLOAD_CHUNK):
                out.write(chunk)
        return target

    def cancel(self) -> Job:
        """Ask a queued or running job to stop (it ends `cancelled` within seconds)."""
        self.record = self._client._json(calls.cancel(self.id))
        return self

    def delete(self) -> None:
        """Delete a finished job and its files (Conflict `job_active` while it runs)."""
        self._client._json(calls.delete("jobs", self.id))


class AsyncJob(JobView):
    """A job of an `AsyncClient`: `Job`'s methods, awaited."""

    def __init__(self, client: AsyncClient, record: JobRecord) -> None:
        super().__init__(record)
        self._client = client

    async def refresh(self) -> AsyncJob:
        self.record = await self._client._json(calls.get("jobs", self.id))
        return self

    async def wait(
        self,
        timeout: float | None = None,
        on_progress: Callable[[AsyncJob], Awaitable[None] | None] | None = None,
        interval: float = 2.0,
    ) -> AsyncJob:
        """`Job.wait`; `on_progress` may be a coroutine function."""
        poll = self._poll(timeout, interval)
        while True:
            if on_progress is not None and self._changed():
                outcome = on_progress(self)
                if outcome is not None:
                    await outcome
            if self.done:
                return self
            await poll.sleep_async(self.status)
            await self.refresh()

    async def results(self) -> Results:
        results: Results = await self._client._json(calls.job_part(self.id, "results"))
        return results

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self._client._json(calls.job_part(self.id, "stats"))
        return stats

    async def artifacts(self) -> list[Artifact]:
        found: list[Artifact] = await self._client._json(calls.job_part(self.id, "artifacts"))
        return found

    async def download(self, name: str = RECOMMENDED, path: str | Path = ".") -> Path:
        """`Job.download`."""
        if name == RECOMMENDED:
            name = recommended_artifact(await self.results())
        target = download_target(path, name)
        call = calls.job_part(self.id, f"artifacts/{name}", stream=True)
        async with self._client._stream(call) as r:
            with partial_file(target) as out:
                async for chunk in r.aiter_bytes(DOWNLOAD_CHUNK):
                    out.write(chunk)
        return target

    async def cancel(self) -> AsyncJob:
        self.record = await self._client._json(calls.cancel(self.id))
        return self

    async def delete(self) -> None:
        await self._client._json(calls.delete("jobs", self.id))
