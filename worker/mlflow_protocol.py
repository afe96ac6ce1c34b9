"""The protocol between the worker and its MLflow logging child, as typed data.

The worker (`worker.mlflow_tracking`) writes one `TrackingRequest`, as JSON, on the child's
stdin and closes it. The child (`python -m worker.mlflow_run`) answers JSON lines on its
stdout: `RunCreated` once the run exists (so the worker knows the run even if it must stop
the child later), then `TrackingDone` when it has logged what it could and written
results.json. A child that ends without `TrackingDone` (stopped at the time limit, crashed)
leaves results.json to the worker.

    worker                                  MLflow child
      | -- TrackingRequest ---------------->  experiment, run
      | <-- RunCreated (run_id, ...)          params, metrics, plots, model, results.json
      | <-- TrackingDone (problems)           the run's status
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from jobs.mlflow_config import MlflowRun

T = TypeVar("T")


class TrackingProtocolError(ValueError):
    """A line that is not a request or message of this protocol."""


@dataclass(frozen=True, kw_only=True)
class TrackingRequest:
    """Log the job whose files are in `folder` as one run of `experiment`."""

    kind: Literal["track"] = "track"
    tracking_uri: str
    experiment: str
    run_name: str
    folder: str  # the job's result set, not yet published (results.json is amended there)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunCreated:
    kind: Literal["run"] = "run"
    run_id: str
    experiment_id: str
    run_url: str | None

    def run(self) -> MlflowRun:
        return MlflowRun(self.run_id, self.experiment_id, self.run_url)


@dataclass(frozen=True, kw_only=True)
class TrackingDone:
    """Logging is over; `problems` (already among results.json's notes) say what failed."""

    kind: Literal["done"] = "done"
    problems: list[str] = field(default_factory=list)


TrackingMessage = RunCreated | TrackingDone
_TRACKING_MESSAGES: dict[str, type[TrackingMessage]] = {"run": RunCreated, "done": TrackingDone}


def encode_tracking(item: TrackingRequest | TrackingMessage) -> str:
    """One JSON object, without a newline."""
    return json.dumps(asdict(item))


def decode_tracking_request(text: str | bytes) -> TrackingRequest:
    """The request the worker wrote.

    Raises:
        TrackingProtocolError: not a JSON object of a request's fields.
    """
    fields = _fields(text)
    if fields.get("kind") != "track":
        raise TrackingProtocolError(f"not a tracking request: kind {fields.get('kind')!r}")
    return _build(TrackingRequest, fields)


def decode_tracking_message(line: str | bytes) -> TrackingMessage:
    """One line the child wrote.

    Raises:
        TrackingProtocolError: not a JSON object, or a kind or fields no message has.
    """
    fields = _fields(line)
    kind = _TRACKING_MESSAGES.get(str(fields.get("kind")))
    if kind is None:
        raise TrackingProtocolError(f"unknown message kind {fields.get('kind')!r}")
    return _build(kind, fields)


def _fields(text: str | bytes) -> dict[str, Any]:
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise TrackingProtocolError(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise TrackingProtocolError(f"expected a JSON object, got {type(fields).__name__}")
    return fields


def _build(kind: type[T], fields: dict[str, Any]) -> T:
    try:
        return kind(**fields)
    except TypeError as exc:
        raise TrackingProtocolError(f"{kind.__name__}: {exc}") from None
