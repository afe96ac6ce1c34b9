"""The multipart form of an upload, parsed as it streams: which fields, how long, what name.

`MultipartForm` receives `python_multipart`'s callbacks. It accepts the file part and the
route's few text fields, each once: an unknown or repeated field, a text field over
`MAX_FIELD_BYTES` or a file over the server's limit fails the request at once (400 or 413),
however much of the body is still to come. The file's bytes wait in `pending` for the caller
(`service.uploads`) to write them to the blob store; nothing here touches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.multipart import parse_options_header

from service.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
MAX_FIELD_BYTES = 4096
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]")


def clean_filename(raw: str) -> str:
    """The client's file name, for display only: no directories, no control characters."""
    name = _UNSAFE_FILENAME.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255] or "upload"


def too_large_message(limit: int) -> str:
    return (
        f"the file is larger than this server accepts ({limit} bytes; "
        "the operator sets DEADWEIGHT_MAX_UPLOAD_BYTES)"
    )


def multipart_openapi(text_fields: dict[str, str] | None = None) -> dict[str, Any]:
    """The request body for /docs: routes read the stream themselves, so FastAPI cannot infer it."""
    properties: dict[str, Any] = {FILE_FIELD: {"type": "string", "format": "binary"}}
    for name, description in (text_fields or {}).items():
        properties[name] = {"type": "string", "description": description}
    schema = {"type": "object", "required": [FILE_FIELD], "properties": properties}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


@dataclass
class MultipartForm:
    """Receives the parser's callbacks; file bytes wait in `pending` until the route writes them."""

    text_fields: frozenset[str]
    max_file_bytes: int
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_bytes: int = 0
    pending: list[bytes] = field(default_factory=list)
    ended: bool = False
    _header_name: bytes = b""
    _header_value: bytes = b""
    _disposition: bytes = b""
    _name: str = ""
    _is_file: bool = False
    _text: bytearray = field(default_factory=bytearray)
    _seen: set[str] = field(default_factory=set)

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_val,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._text = b"", bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        allowed = sorted({FILE_FIELD} | self.text_fields)
        if name not in allowed:
            raise BadRequest(
                f"unexpected form field {name!r}; this endpoint takes: {', '.join(allowed)}"
            )
        if name != FILE_FIELD and name in self._seen:
            # Each field once: millions of tiny repeated parts would cost the API's event
            # loop minutes of parsing for one request.
            raise BadRequest(f"form field {name!r} is given more than once; send it once")
        self._seen.add(name)
        self._is_file = name == FILE_FIELD
        if self._is_file:
            if self.filename is not None:
                raise BadRequest(f"send one file in the form field {FILE_FIELD!r}, not several")
            self.filename = clean_filename(options.get(b"filename", b"").decode("utf-8", "replace"))
        self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                raise PayloadTooLarge(too_large_message(self.max_file_bytes))
            self.pending.append(data[start:end])
        else:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise BadRequest(
                    f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes"
                )

    def _part_end(self) -> None:
        if not self._is_file:
            try:
                self.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest(f"form field {self._name!r} is not UTF-8 text") from exc

    def _end(self) -> None:
        self.ended = True
