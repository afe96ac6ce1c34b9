"""Every request the client makes, as data: built once here, sent by `Client` or
`AsyncClient` (each only adds the I/O), so the two cannot drift apart.

A `Call` says how it may be retried: an upload or a submission carries an `Idempotency-Key`
(one uuid4 per call, the same on each retry), so a retry after a lost answer returns the
first attempt's resource instead of making a second one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from deadweight_client.thresholds import thresholds_from_text

# A request that fails on its way (refused, reset) or with 503/429 is repeated only when a
# repeat cannot do a second thing: reads, and writes made safe by a key or by their nature.
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class FileUpload:
    """A multipart upload of one file from disk (field `file`), plus form fields."""

    path: Path
    form: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    json: Any = None
    upload: FileUpload | None = None
    idempotency_key: str | None = None
    stream: bool = False  # the body is read by the caller (downloads)
    # A submission on a model the service is still inspecting is answered 409
    # `model_not_ready` with Retry-After: such a call waits and tries again.
    wait_for_model: bool = False

    @contextlib.contextmanager
    def request(self, http: httpx.Client | httpx.AsyncClient) -> Iterator[httpx.Request]:
        """The request of one attempt; an upload's file is opened for it (and closed after),
        so each retry streams the file from its start and none reads it into memory."""
        headers = {IDEMPOTENCY_HEADER: self.idempotency_key} if self.idempotency_key else {}
        with contextlib.ExitStack() as stack:
            files: dict[str, tuple[str, IO[bytes], str]] | None = None
            if self.upload is not None:
                fh = stack.enter_context(self.upload.path.open("rb"))
                files = {"file": (self.upload.path.name, fh, "application/octet-stream")}
            yield http.build_request(
                self.method,
                self.path,
                params=dict(self.params) if self.params else None,
                json=self.json,
                data=dict(self.upload.form) if self.upload and self.upload.form else None,
                files=files,
                headers=headers,
            )


def new_key() -> str:
    return str(uuid.uuid4())


def upload_model(path: str | Path, key: str | None) -> Call:
    return Call(
        "POST", "/v1/models", upload=FileUpload(_file(path)), idempotency_key=key or new_key()
    )


def upload_dataset(
    path: str | Path, label_column: str | None, no_labels: bool, key: str | None
) -> Call:
    form: dict[str, str] = {}
    if label_column is not None:
        form["label_column"] = label_column
    if no_labels:
        form["no_labels"] = "true"
    return Call(
        "POST",
        "/v1/datasets",
        upload=FileUpload(_file(path), form),
        idempotency_key=key or new_key(),
    )


def get(kind: str, resource_id: str) -> Call:
    """`kind`: models, datasets or jobs."""
    return Call("GET", f"/v1/{kind}/{_segment(resource_id)}")


def delete(kind: str, resource_id: str) -> Call:
    return Call("DELETE", f"/v1/{kind}/{_segment(resource_id)}")


def listing(kind: str, limit: int, offset: int, **filters: str | None) -> Call:
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    params.update({k: v for k, v in filters.items() if v is not None})
    return Call("GET", f"/v1/{kind}", params=params)


def job_listing(
    status: str | None,
    model: str | Mapping[str, Any] | None,
    dataset: str | Mapping[str, Any] | None,
    limit: int,
    offset: int,
) -> Call:
    return listing(
        "jobs",
        limit,
        offset,
        status=status,
        model_id=None if model is None else _id(model),
        dataset_id=None if dataset is None else _id(dataset),
    )


def job_part(job_id: str, part: str, stream: bool = False) -> Call:
    """`results`, `stats`, `artifacts` or `artifacts/<name>` of a job."""
    return Call("GET", f"/v1/jobs/{_segment(job_id)}/{part}", stream=stream)


def cancel(job_id: str) -> Call:
    # Cancelling twice is cancelling once: safe to retry without a key.
    return Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel")


def submit(body: Mapping[str, Any], key: str | None) -> Call:
    return Call(
        "POST", "/v1/jobs", json=dict(body), idempotency_key=key or new_key(), wait_for_model=True
    )


ThresholdsArg = str | Sequence[float | Mapping[str, float]]


def job_body(
    model: str | Mapping[str, Any],
    dataset: str | Mapping[str, Any],
    eval_dataset: str | Mapping[str, Any] | None,
    thresholds: ThresholdsArg | None,
    webhook: str | Mapping[str, Any] | None,
    options: Mapping[str, Any],
    mlflow: str | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `POST /v1/jobs` body: IDs (or the records uploads returned), the options that are
    set (None: the server's default), `thresholds` as the CLI's text (`f0.2,f0.4`), numbers
    (fractions) or the API's objects, `webhook` as a URL or its object, `mlflow` as an
    experiment's name or its object. Unknown options pass
    through: the server checks them (422 names the field)."""
    body: dict[str, Any] = {"model_id": _id(model), "dataset_id": _id(dataset)}
    if eval_dataset is not None:
        body["eval_dataset_id"] = _id(eval_dataset)
    if thresholds is not None:
        body["thresholds"] = (
            thresholds_from_text(thresholds)
            if isinstance(thresholds, str)
            else [t if isinstance(t, Mapping) else {"fraction": float(t)} for t in thresholds]
        )
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    if mlflow is not None:
        body["mlflow"] = {"experiment": mlflow} if isinstance(mlflow, str) else dict(mlflow)
    body.update({k: v for k, v in options.items() if v is not None})
    return body


def _id(ref: str | Mapping[str, Any]) -> str:
    return ref if isinstance(ref, str) else str(ref["id"])


def _segment(resource_id: str) -> str:
    """An ID as one path segment: a `/` or `..` in it must not reach another route."""
    if not resource_id or "/" in resource_id or resource_id in {".", ".."}:
        raise ValueError(f"not an ID: {resource_id!r}")
    return resource_id


def _file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path
