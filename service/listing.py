"""What every listing (`GET /v1/jobs`, `/v1/models`, `/v1/datasets`) shares: one page of
the caller's records, newest first, and filters whose unknown values are refused (422 naming
the accepted ones) instead of silently ignored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query

from jobs.states import JobStatus, ModelStatus
from service.errors import Unprocessable

E = TypeVar("E", bound=StrEnum)

MAX_PAGE = 200


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def page_of(
    limit: int = Query(50, ge=1, le=MAX_PAGE, description="page size"),
    # Bounded so that SQL's 64-bit integers always hold it.
    offset: int = Query(0, ge=0, le=2**31, description="records to skip, newest first"),
) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(page_of)]


def _status_query(enum: type[StrEnum], records: str) -> Any:
    accepted = ", ".join(e.value for e in enum)
    description = f"only {records} in these states (repeated, or comma-separated): {accepted}"
    return Query(description=description)


# The `status` filters, read by `parse_choices`.
JobStatusFilter = Annotated[list[str] | None, _status_query(JobStatus, "jobs")]
ModelStatusFilter = Annotated[list[str] | None, _status_query(ModelStatus, "models")]


def parse_choices(name: str, values: Sequence[str] | None, enum: type[E]) -> frozenset[E]:
    """The enum members named by a filter's values; empty: no filter.

    Raises:
        Unprocessable: a value is not one of the enum's (the message lists them).
    """
    chosen: set[E] = set()
    for value in values or ():
        for part in value.split(","):
            item = part.strip()
            if not item:
                continue
            try:
                chosen.add(enum(item))
            except ValueError:
                accepted = ", ".join(e.value for e in enum)
                raise Unprocessable(
                    f"unknown {name} {item[:64]!r}; accepted values: {accepted} (several: "
                    f"repeat the parameter or separate them with commas)",
                    code="invalid_filter",
                ) from None
    return frozenset(chosen)
