"""What both clients make of upload records and listings."""

from __future__ import annotations

from typing import Any

from deadweight_client.errors import InvalidModel
from deadweight_client.records import ModelRecord

INSPECTED = frozenset({"ready", "invalid"})


def is_inspected(model: ModelRecord) -> bool:
    return model.get("status") in INSPECTED


def checked_model(model: ModelRecord) -> ModelRecord:
    """The record of a `ready` model.

    Raises:
        InvalidModel: the inspection refused it; its message is the service's reason.
    """
    if model.get("status") == "invalid":
        reason = model.get("error") or "no reason given"
        raise InvalidModel(422, "invalid_model", f"model {model['id']}: {reason}")
    return model


def page_items(page: Any) -> list[Any]:
    """The records of one page: `{"data": [...], "count": N}` (a bare list is taken too)."""
    if isinstance(page, dict):
        return list(page.get("data", []))
    return list(page or [])
