"""`AsyncClient`: `Client`'s methods, awaited (for asyncio pipelines and services). Requests
are built by `calls` and retried as `retry` decides, exactly as `Client` does; see its
docstrings for each method's arguments and errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from deadweight_client import calls
from deadweight_client.calls import Call, ThresholdsArg
from deadweight_client.connection import Connection
from deadweight_client.job import AsyncJob
from deadweight_client.polling import Poll
from deadweight_client.records import DatasetRecord, JobRecord, ModelRecord
from deadweight_client.retry import Attempts, RetryPolicy
from deadweight_client.uploads import checked_model, is_inspected, page_items


class AsyncClient:
    """`Client`, for asyncio: `async with AsyncClient() as client: ...`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connection = Connection.resolve(url, api_key, timeout)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(**self.connection.httpx_options(), transport=transport)

    # -- uploads ----------------------------------------------------------------------------
    async def upload_model(
        self,
        path: str | Path,
        *,
        wait: bool = True,
        timeout: float | None = 600.0,
        idempotency_key: str | None = None,
    ) -> ModelRecord:
        """`Client.upload_model`."""
        model: ModelRecord = await self._json(calls.upload_model(path, idempotency_key))
        return await self.wait_for_model(model, timeout) if wait else model

    async def wait_for_model(
        self, model: str | Mapping[str, Any], timeout: float | None = 600.0
    ) -> ModelRecord:
        """`Client.wait_for_model`."""
        record = await self.get_model(model if isinstance(model, str) else str(model["id"]))
        poll = Poll(f"model {record['id']}", timeout, interval=1.0)
        while not is_inspected(record):
            await poll.sleep_async(record["status"])
            record = await self.get_model(record["id"])
        return checked_model(record)

    async def upload_dataset(
        self,
        path: str | Path,
        *,
        label_column: str | None = None,
        no_labels: bool = False,
        idempotency_key: str | None = None,
    ) -> DatasetRecord:
        """`Client.upload_dataset`."""
        call = calls.upload_dataset(path, label_column, no_labels, idempotency_key)
        dataset: DatasetRecord = await self._json(call)
        return dataset

    async def get_model(self, model_id: str) -> ModelRecord:
        model: ModelRecord = await self._json(calls.get("models", model_id))
        return model

    async def get_dataset(self, dataset_id: str) -> DatasetRecord:
        dataset: DatasetRecord = await self._json(calls.get("datasets", dataset_id))
        return dataset

    async def list_models(
        self, status: str | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[ModelRecord]:
        return page_items(await self._json(calls.listing("models", limit, offset, status=status)))

    async def list_datasets(self, *, limit: int = 50, offset: int = 0) -> list[DatasetRecord]:
        return page_items(await self._json(calls.listing("datasets", limit, offset)))

    async def delete_model(self, model_id: str) -> None:
        await self._json(calls.delete("models", model_id))

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._json(calls.delete("datasets", dataset_id))

    # -- jobs -------------------------------------------------------------------------------
    async def submit(
        self,
        model: str | Mapping[str, Any],
        dataset: str | Mapping[str, Any],
        *,
        eval_dataset: str | Mapping[str, Any] | None = None,
        thresholds: ThresholdsArg | None = None,
        webhook: str | Mapping[str, Any] | None = None,
        mlflow: str | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> AsyncJob:
        """`Client.submit`."""
        body = calls.job_body(model, dataset, eval_dataset, thresholds, webhook, options, mlflow)
        record: JobRecord = await self._json(calls.submit(body, idempotency_key))
        return AsyncJob(self, record)

    async def job(self, job_id: str) -> AsyncJob:
        record: JobRecord = await self._json(calls.get("jobs", job_id))
        return AsyncJob(self, record)

    async def list_jobs(
        self,
        status: str | None = None,
        *,
        model: str | Mapping[str, Any] | None = None,
        dataset: str | Mapping[str, Any] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[AsyncJob]:
        call = calls.job_listing(status, model, dataset, limit, offset)
        page = await self._json(call)
        return [AsyncJob(self, record) for record in page_items(page)]

    # -- transport --------------------------------------------------------------------------
    async def _json(self, call: Call) -> Any:
        async with self._stream(call) as response:
            return response.json() if response.content else None

    @contextlib.asynccontextmanager
    async def _stream(self, call: Call) -> AsyncIterator[httpx.Response]:
        attempts = Attempts(call, self.retry)
        delay: float | None
        while True:
            try:
                response = await self._attempt(call)
            except httpx.TransportError as exc:
                delay = attempts.after_error(exc)
            else:
                delay = attempts.after_response(response)
                if delay is None:
                    break
                await response.aclose()
            await asyncio.sleep(delay)
        try:
            attempts.raise_for_answer(response)
            yield response
        finally:
            await response.aclose()

    async def _attempt(self, call: Call) -> httpx.Response:
        with call.request(self._http) as request:
            response = await self._http.send(request, stream=True)
        try:
            if not call.stream or response.is_error:
                await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.connection.url}>"
