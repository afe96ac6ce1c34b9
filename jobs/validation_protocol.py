"""The protocol between the API and its validation child: one request in, one result out.

The parent (`jobs.validation_launch`) passes a `ValidationRequest` as the child's one
argument, JSON; the child (`jobs.validation_child`) prints one `ValidationResult` line, JSON,
on stdout. These types are the whole of it; both sides import them from here, so the parent
never imports the child's code and the child never imports the parent's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class UploadKind(StrEnum):
    DATASET = "dataset"
    MODEL_ARCHIVE = "model_archive"


class Outcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"  # the file is unusable: `message` says why, for the user
    OUT_OF_MEMORY = "out_of_memory"  # MemoryError under the address-space limit
    CRASHED = "crashed"  # a bug met on this file: details on the child's stderr


@dataclass(frozen=True)
class ValidationRequest:
    """What the parent asks the child: one file, and the limits it must apply to itself."""

    kind: UploadKind
    path: str
    filename: str
    label_column: str | None
    max_samples: int
    max_features: int
    max_decoded_bytes: int
    memory_bytes: int  # address space; 0: none
    cpu_seconds: int
    parent_pid: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> ValidationRequest:
        raw = json.loads(text)
        return ValidationRequest(**{**raw, "kind": UploadKind(raw["kind"])})


@dataclass(frozen=True)
class ValidationResult:
    """The child's one line of output."""

    outcome: Outcome
    info: dict[str, Any] | None = None  # DatasetInfo.as_dict() for a dataset; {} for a model
    message: str | None = None
    peak_rss_bytes: int = 0  # the child's own peak resident memory

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> ValidationResult:
        raw = json.loads(text)
        return ValidationResult(**{**raw, "outcome": Outcome(raw["outcome"])})
