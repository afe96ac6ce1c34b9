"""Request and response bodies of the HTTP API (see CONTRACT.md; names and shapes are public):
the shared bases, models, datasets and operations; the jobs' are in `service.job_schemas`.

Suffixes say the role: `...Create`/`...In` come in, `...Public` goes out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from jobs.records import DatasetRecord, ModelRecord
from jobs.states import ModelStatus
from service.openapi_errors import ErrorDetailPublic


class Schema(BaseModel):
    # `model_id` is a field name of the public API, not pydantic's namespace.
    model_config = ConfigDict(protected_namespaces=())


class InputSchema(Schema):
    # Unknown keys are typos the user wants to hear about; NaN/inf are never a valid setting.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC, so say so on the way out."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


# -- models and datasets --------------------------------------------------------------------
class ModelInput(Schema):
    name: str
    shape: list[int | None] = Field(description="null: a dynamic dimension (the batch)")
    dtype: str


class ChannelGroupPublic(Schema):
    """Channels that are cut together: a layer's outputs, with the layers coupled to it."""

    name: str = Field(description="the first producing layer, e.g. layer1.0.conv1")
    width: int = Field(
        description="units cut one by one: channels (neurons), or heads for kind `head`"
    )
    kind: str = Field(
        description="linear, conv, embedding, head (attention heads: q, k and v rows and "
        "the output projection's columns of each), or coupled (several kinds cut alike)"
    )
    coupled: list[str] | None = Field(
        None, description="every producing layer cut alike (residual adds, attention gates)"
    )
    parts: int | None = Field(
        None, description="runs of a grouped convolution; each keeps as many channels"
    )
    heads: int | None = Field(
        None, description="kind head: heads cut as units (key/value heads under GQA)"
    )
    head_dim: int | None = Field(None, description="kind head: channels of each head")
    query_heads: int | None = Field(
        None,
        description="kind head, grouped-query attention: query heads, cut with the "
        "key/value head they share",
    )
    unit: int | None = Field(
        None, description="channels of the producing layer cut together as one unit"
    )
    reason: str | None = Field(None, description="why a frozen group cannot be cut")


class ModelPublic(Schema):
    id: str
    sha256: str
    bytes: int
    filename: str
    status: ModelStatus
    created_at: datetime
    parameters: int | None = None
    inputs: list[ModelInput] | None = None
    layers: list[ChannelGroupPublic] | None = None
    frozen: list[ChannelGroupPublic] | None = None
    error: str | None = None

    @classmethod
    def from_record(cls, record: ModelRecord) -> Self:
        info = record.info or {}
        return cls(
            id=record.id,
            sha256=record.sha256,
            bytes=record.bytes,
            filename=record.filename,
            status=record.status,
            created_at=utc(record.created_at),
            parameters=info.get("parameters"),
            inputs=info.get("inputs"),
            layers=info.get("layers"),
            frozen=info.get("frozen"),
            error=record.error,
        )


class DatasetPublic(Schema):
    id: str
    sha256: str
    bytes: int
    filename: str
    format: str
    samples: int
    x_shape: list[int] = Field(description="per-sample shape, without the batch dimension")
    has_labels: bool
    label_column: str | None = None
    created_at: datetime

    @classmethod
    def from_record(cls, record: DatasetRecord) -> Self:
        return cls(
            id=record.id,
            sha256=record.sha256,
            bytes=record.bytes,
            filename=record.filename,
            format=record.format,
            samples=record.samples,
            x_shape=list(record.x_shape),
            has_labels=record.has_labels,
            label_column=record.label_column,
            created_at=utc(record.created_at),
        )


class ModelsPublic(Schema):
    data: list[ModelPublic]
    count: int = Field(description="all of the caller's models that match, not only this page")


class DatasetsPublic(Schema):
    data: list[DatasetPublic]
    count: int = Field(description="all of the caller's datasets, not only this page")


# -- operations -----------------------------------------------------------------------------
class HealthPublic(Schema):
    status: str


class ReadyPublic(Schema):
    status: str
    checks: dict[str, str]


class NotReadyPublic(ReadyPublic):
    """/readyz's 503: the probe's fields, and the error envelope for clients that read it."""

    error: ErrorDetailPublic
