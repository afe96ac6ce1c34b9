"""A CSV uploaded without `label_column` whose header names a column like a label.

Without `label_column`, every column is a feature: a file whose labels sit in a column called
`label` would be accepted, and its jobs would fail much later on a shape that does not fit the
model, or worse, learn the labels as a feature. The upload is refused instead, asking for
`label_column`, or for `no_labels=true` when that column really is a feature.

Only the header is read, from a file the validation process has already accepted (UTF-8,
well-formed, lines of at most `MAX_LINE_CHARS`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from service.errors import Unprocessable

# Compared case-insensitively, without surrounding spaces.
LABEL_LIKE = ("label", "y", "target", "class")
NO_LABELS = "no_labels"
_MAX_HEADER_CHARS = 1024 * 1024 + 1
# Blank lines before the header (the CSV reader skips them too).
_MAX_BLANK_LINES = 64

# Read as pydantic reads a boolean (true/false, 1/0, yes/no, on/off), as JSON fields are.
_BOOLEAN = TypeAdapter(bool)


class LabelColumnRequired(Unprocessable):
    default_code = "label_column_required"


def no_labels_flag(value: str | None) -> bool:
    """The `no_labels` form field: true, false, or absent (false).

    Raises:
        Unprocessable: any other value.
    """
    text = (value or "").strip()
    if not text:
        return False
    try:
        return _BOOLEAN.validate_python(text)
    except ValidationError:
        raise Unprocessable(
            f"form field {NO_LABELS!r} must be true or false, got {text[:40]!r}"
        ) from None


def csv_header(path: Path) -> list[str]:
    """The column names of a validated CSV file."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        for _ in range(_MAX_BLANK_LINES):
            line = f.readline(_MAX_HEADER_CHARS)
            if not line:
                return []
            if line.strip():
                return [cell.strip() for cell in next(csv.reader([line]), [])]
    return []


def check_label_like(path: Path, filename: str) -> None:
    """Refuse a CSV without `label_column` whose header has a column named like a label.

    Raises:
        LabelColumnRequired: naming the column, and both ways out.
    """
    suspects = [c for c in csv_header(path) if c.lower() in LABEL_LIKE]
    if suspects:
        column = suspects[0]
        raise LabelColumnRequired(
            f"{filename} has a column named {column!r}, which looks like the labels, but no "
            f"label_column was given, so it would be read as a feature: send the form field "
            f"label_column={column!r} (or the name of the real label column), or "
            f"{NO_LABELS}=true if {column!r} really is a feature"
        )
