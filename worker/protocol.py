"""The protocol between the worker and its sandboxed engine process, as typed data.

The worker (`worker.sandbox`) writes one request, as JSON, on the engine's stdin and closes
it. The engine (`python -m worker.engine_process`) answers JSON lines on its stdout: any
number of `ProgressMessage`s, then one final message, a `ResultMessage` or one of the
failures. Nothing else travels: the worker cancels a run by killing the engine.

    worker                                  engine process
      | -- InspectRequest ----------------->  describe the model (`pruning.describe`)
      | -- JobRequest | PruneRequest ------>  run the sweep into `out_dir`
      | -- SelfCheckRequest --------------->  its own environment and limits (tests)
      |    (a standby engine reads `StandbyOrders` first: its limits and directory)
      | <-- ProgressMessage (stage, fraction), throttled
      | <-- ResultMessage | RefusalMessage | DiskFullMessage
      |     | FileTooLargeMessage | IncidentMessage          (exactly one, last)

Every request and message is a JSON object whose `kind` names its type; `encode` and the two
`decode_*` functions below are the only code that knows the wire form. The request carries
file paths and settings only: no store, no secrets.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

from jobs.job_config import JobConfig

JsonObject = dict[str, Any]
T = TypeVar("T")


class ProtocolError(ValueError):
    """A line that is not a request or message of this protocol."""


# -- requests (worker -> engine) -------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A dataset file as the engine opens it (`jobs.datasets.open_dataset`)."""

    path: str
    format: str | None  # None: guessed from the file (`deadweight prune`)
    label_column: str | None = None
    name: str | None = None  # the upload's name for messages: blobs are named by their hash


@dataclass(frozen=True, kw_only=True)
class InspectRequest:
    """Read an uploaded model with the safe reader; the result is its description."""

    kind: Literal["inspect"] = "inspect"
    model: str
    max_parameters: int | None = None
    stack_on_crash: bool = True  # faulthandler prints the Python stack of a native crash


@dataclass(frozen=True, kw_only=True)
class _SweepRequest:
    """What a sweep needs: the files, the job's configuration and the worker's settings."""

    model: str
    data: DatasetSpec
    eval_data: DatasetSpec | None = None
    config: JobConfig  # on the wire in its stored form (`JobConfig.to_json`)
    batch_size: int
    device: str
    out_dir: str  # the files are written here
    max_parameters: int | None = None
    stack_on_crash: bool = True
    measure_latency: bool = True  # time every distinct model (DEADWEIGHT_MEASURE_LATENCY)


@dataclass(frozen=True, kw_only=True)
class JobRequest(_SweepRequest):
    """A service job; the result is None (the files in `out_dir` are the outcome)."""

    kind: Literal["job"] = "job"


@dataclass(frozen=True, kw_only=True)
class PruneRequest(_SweepRequest):
    """A job for `deadweight prune`; the result is the table it prints."""

    kind: Literal["prune"] = "prune"


@dataclass(frozen=True, kw_only=True)
class SelfCheckRequest:
    """The engine process's own environment names, directory and limits: the sandbox,
    checked (not a model's description: that is `InspectRequest`)."""

    kind: Literal["self_check"] = "self_check"
    stack_on_crash: bool = True


EngineRequest = InspectRequest | JobRequest | PruneRequest | SelfCheckRequest


@dataclass(frozen=True, kw_only=True)
class StandbyOrders:
    """The line a standby engine (`worker.sandbox.standby`: started before its request was
    known) reads before the request: the limits it puts on itself (`worker.sandbox.Limits`'
    fields) and the working directory it moves into, before it reads anything else."""

    kind: Literal["orders"] = "orders"
    workdir: str
    home: str  # HOME and TMPDIR, as a fresh engine in `workdir` has them
    tmpdir: str
    memory_bytes: int
    cpu_seconds: int
    file_bytes: int = 0


# -- messages (engine -> worker) -------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ProgressMessage:
    """The stage the engine is in (`pruning.sweep`'s stages) and how far it got, in [0, 1]."""

    kind: Literal["progress"] = "progress"
    stage: str
    fraction: float


@dataclass(frozen=True, kw_only=True)
class ResultMessage:
    """The request is done; `value` is its result (JSON)."""

    kind: Literal["result"] = "result"
    value: Any


@dataclass(frozen=True, kw_only=True)
class RefusalMessage:
    """A typed refusal of the input (the engine's errors, a dataset file's, or out of
    memory within the limit); the reason is for the user."""

    kind: Literal["refusal"] = "refusal"
    reason: str


@dataclass(frozen=True, kw_only=True)
class DiskFullMessage:
    """A write failed: no space left on the device (or the quota reached)."""

    kind: Literal["disk_full"] = "disk_full"
    reason: str


@dataclass(frozen=True, kw_only=True)
class FileTooLargeMessage:
    """A write failed: a file grew past the sandbox's file size limit (the output cap)."""

    kind: Literal["file_too_large"] = "file_too_large"
    reason: str


def new_incident() -> str:
    """An ID that ties a user's error message to the details in the log: the engine's
    (`IncidentMessage`) and the worker's own (`worker.user_errors`, `worker.sandbox`)."""
    return secrets.token_hex(6)


@dataclass(frozen=True, kw_only=True)
class IncidentMessage:
    """An unexpected exception: the user sees the incident ID, the log gets the detail
    (the traceback is on the engine's stderr under the same ID)."""

    kind: Literal["incident"] = "incident"
    incident: str
    detail: str


FinalMessage = (
    ResultMessage | RefusalMessage | DiskFullMessage | FileTooLargeMessage | IncidentMessage
)
EngineMessage = ProgressMessage | FinalMessage

_REQUESTS: dict[str, type[EngineRequest]] = {
    "inspect": InspectRequest,
    "job": JobRequest,
    "prune": PruneRequest,
    "self_check": SelfCheckRequest,
}
_MESSAGES: dict[str, type[EngineMessage]] = {
    "progress": ProgressMessage,
    "result": ResultMessage,
    "refusal": RefusalMessage,
    "disk_full": DiskFullMessage,
    "file_too_large": FileTooLargeMessage,
    "incident": IncidentMessage,
}


# -- the wire form ---------------------------------------------------------------------------
def encode(item: EngineRequest | EngineMessage | StandbyOrders) -> str:
    """One JSON object, without a newline."""
    fields = asdict(item)
    if isinstance(item, _SweepRequest):
        fields["config"] = item.config.to_json()  # the form a job's row stores
    return json.dumps(fields)


def decode_request(text: str | bytes) -> EngineRequest:
    """The request the worker wrote.

    Raises:
        ProtocolError: not a JSON object, or a kind or fields no request has.
    """
    fields = _fields(text)
    for key in ("data", "eval_data"):
        if isinstance(fields.get(key), dict):
            fields[key] = _build(DatasetSpec, fields[key])
    if isinstance(fields.get("config"), dict):
        try:
            fields["config"] = JobConfig.from_json(fields["config"])
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"config: {exc}") from None
    return _build(_kind(fields, _REQUESTS), fields)


def decode_orders(line: str | bytes) -> StandbyOrders:
    """The orders a standby engine was given.

    Raises:
        ProtocolError: not a JSON object, or not orders.
    """
    fields = _fields(line)
    return _build(_kind(fields, {"orders": StandbyOrders}), fields)


def decode_message(line: str | bytes) -> EngineMessage:
    """One line the engine wrote.

    Raises:
        ProtocolError: not a JSON object, or a kind or fields no message has.
    """
    fields = _fields(line)
    return _build(_kind(fields, _MESSAGES), fields)


def _fields(text: str | bytes) -> JsonObject:
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ProtocolError(f"expected a JSON object, got {type(fields).__name__}")
    return fields


def _kind(fields: JsonObject, types: dict[str, type[T]]) -> type[T]:
    kind = fields.get("kind")
    found = types.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise ProtocolError(f"unknown kind {kind!r}")
    return found


def _build(cls: type[T], fields: JsonObject) -> T:
    try:
        return cls(**fields)
    except TypeError as exc:  # a missing or unexpected field
        raise ProtocolError(f"{cls.__name__}: {exc}") from None
