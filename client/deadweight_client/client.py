"""`Client`: the service over HTTP, blocking. `AsyncClient` (async_client.py) has the same
methods; both build their requests with `calls` and retry as `retry` decides."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from deadweight_client import calls
from deadweight_client.calls import Call, ThresholdsArg
from deadweight_client.connection import Connection
from deadweight_client.job import Job
from deadweight_client.polling import Poll
from deadweight_client.records import DatasetRecord, JobRecord, ModelRecord
from deadweight_client.retry import Attempts, RetryPolicy
from deadweight_client.uploads import checked_model, is_inspected, page_items


class Client:
    """A connection to a Deadweight service.

    Args:
        url: the service's address; default `DEADWEIGHT_URL`, else http://127.0.0.1:8000.
        api_key: sent as `Authorization: Bearer`; default `DEADWEIGHT_API_KEY`, else none
            (a service without API keys).
        timeout: seconds a request may wait on the network at any step.
        retry: how transient failures (503, 429, connection errors) are retried.
        transport: an httpx transport (tests, proxies); default: httpx's.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.connection = Connection.resolve(url, api_key, timeout)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(**self.connection.httpx_options(), transport=transport)

    # -- uploads ----------------------------------------------------------------------------
    def upload_model(
        self,
        path: str | Path,
        *,
        wait: bool = True,
        timeout: float | None = 600.0,
        idempotency_key: str | None = None,
    ) -> ModelRecord:
        """Upload a `torch.export` program (`.pt2`), streamed from disk.

        Args:
            wait: wait until the service has inspected it (`ready`), so a job submitted
                next runs its fit checks at once.
            timeout: seconds to wait for the inspection.
            idempotency_key: reuse one to make a repeated upload return the first one's
                record; default: a fresh key per call, reused by its retries.

        Raises:
            InvalidModel: the inspection refused the model (its `message` says why).
            WaitTimeout: the inspection had not finished within `timeout`.
        """
        model: ModelRecord = self._json(calls.upload_model(path, idempotency_key))
        return self.wait_for_model(model, timeout) if wait else model

    def wait_for_model(
        self, model: str | Mapping[str, Any], timeout: float | None = 600.0
    ) -> ModelRecord:
        """Poll a model until its inspection has finished; returns the `ready` record.

        Raises:
            InvalidModel: the inspection refused it.
        """
        record = self.get_model(model if isinstance(model, str) else str(model["id"]))
        poll = Poll(f"model {record['id']}", timeout, interval=1.0)
        while not is_inspected(record):
            poll.sleep_sync(record["status"])
            record = self.get_model(record["id"])
        return checked_model(record)

    def upload_dataset(
        self,
        path: str | Path,
        *,
        label_column: str | None = None,
        no_labels: bool = False,
        idempotency_key: str | None = None,
    ) -> DatasetRecord:
        """Upload a dataset (`.npz` with `x` and optional `y`, `.safetensors`, `.csv`).

        Args:
            label_column: a CSV's label column.
            no_labels: a CSV with no labels (say so when a feature is named like a label).
        """
        call = calls.upload_dataset(path, label_column, no_labels, idempotency_key)
        dataset: DatasetRecord = self._json(call)
        return dataset

    def get_model(self, model_id: str) -> ModelRecord:
        model: ModelRecord = self._json(calls.get("models", model_id))
        return model

    def get_dataset(self, dataset_id: str) -> DatasetRecord:
        dataset: DatasetRecord = self._json(calls.get("datasets", dataset_id))
        return dataset

    def list_models(
        self, status: str | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[ModelRecord]:
        """One page of the caller's models, newest first; `status`: pending, ready or
        invalid."""
        return page_items(self._json(calls.listing("models", limit, offset, status=status)))

    def list_datasets(self, *, limit: int = 50, offset: int = 0) -> list[DatasetRecord]:
        """One page of the caller's datasets, newest first."""
        return page_items(self._json(calls.listing("datasets", limit, offset)))

    def delete_model(self, model_id: str) -> None:
        """Delete a model (Conflict while a queued or running job uses it)."""
        self._json(calls.delete("models", model_id))

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset (Conflict while a queued or running job uses it)."""
        self._json(calls.delete("datasets", dataset_id))

    # -- jobs -------------------------------------------------------------------------------
    def submit(
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
    ) -> Job:
        """Submit a pruning job; returns it `queued` (see `Job.wait`).

        Args:
            model, dataset, eval_dataset: IDs, or the records the uploads returned.
            thresholds: `"f0.2,f0.4"` (the CLI's text), fractions (`[0.2, 0.4]`) or the
                API's objects (`[{"mean": 0.1, "std": 0.4}]`); None: the default sweep.
            webhook: a URL the service POSTs the job's end to, or `{"url": ...}`.
            mlflow: log the job as an MLflow run: an experiment's name, or
                `{"experiment": ..., "run_name": ...}` (the service needs
                DEADWEIGHT_MLFLOW_TRACKING_URI; the run's IDs come in the results' `mlflow`).
            idempotency_key: a key of the caller's (a pipeline step that may run twice);
                default: a fresh one per call, reused by its retries.
            **options: the job body's other fields, as the HTTP API names them:
                criterion, compensate, allocation, search, max_metric_drop,
                max_latency_ms, recovery, metric, seed, formats, ... (None: the server's default).

        A model still being inspected is waited for (409 `model_not_ready`, retried for
        up to `RetryPolicy.busy_timeout`).
        """
        body = calls.job_body(model, dataset, eval_dataset, thresholds, webhook, options, mlflow)
        record: JobRecord = self._json(calls.submit(body, idempotency_key))
        return Job(self, record)

    def job(self, job_id: str) -> Job:
        """A job by its ID, freshly fetched."""
        record: JobRecord = self._json(calls.get("jobs", job_id))
        return Job(self, record)

    def list_jobs(
        self,
        status: str | None = None,
        *,
        model: str | Mapping[str, Any] | None = None,
        dataset: str | Mapping[str, Any] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """One page of the caller's jobs, newest first, filtered by `status` (queued,
        running, succeeded, failed, cancelled), `model` or `dataset` (IDs or records)."""
        call = calls.job_listing(status, model, dataset, limit, offset)
        page = self._json(call)
        return [Job(self, record) for record in page_items(page)]

    # -- transport --------------------------------------------------------------------------
    def _json(self, call: Call) -> Any:
        """The call's JSON answer (None for an empty one)."""
        with self._stream(call) as response:
            return response.json() if response.content else None

    @contextlib.contextmanager
    def _stream(self, call: Call) -> Iterator[httpx.Response]:
        """The call's successful response, retried as `retry` allows; its body is read
        already unless `call.stream`. Raises the `ApiError` of an error answer."""
        attempts = Attempts(call, self.retry)
        delay: float | None
        while True:
            try:
                response = self._attempt(call)
            except httpx.TransportError as exc:
                delay = attempts.after_error(exc)
            else:
                delay = attempts.after_response(response)
                if delay is None:
                    break
                response.close()
            time.sleep(delay)
        try:
            attempts.raise_for_answer(response)
            yield response
        finally:
            response.close()

    def _attempt(self, call: Call) -> httpx.Response:
        with call.request(self._http) as request:
            response = self._http.send(request, stream=True)
        try:
            if not call.stream or response.is_error:
                response.read()
        except BaseException:
            response.close()
            raise
        return response

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.connection.url}>"
