"""Files served from a job's folder, with Range errors in the API's own error format.

Starlette's `FileResponse` answers a malformed or unsatisfiable `Range` header with plain
text; clients that parse every error expect `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import os

from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, MalformedRangeHeader
from starlette.responses import RangeNotSatisfiable as Unsatisfiable
from starlette.types import Receive, Scope, Send

from service.errors import error_body


class JobFileResponse(FileResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._range_refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _range_refusal(self, scope: Scope) -> JSONResponse | None:
        http_range = Headers(scope=scope).get("range")
        if http_range is None or scope.get("method", "GET").upper() not in ("GET", "HEAD"):
            return None
        return range_refusal(http_range, os.stat(self.path).st_size)


def range_refusal(http_range: str, size: int) -> JSONResponse | None:
    """The API's error for a malformed (400) or unsatisfiable (416) Range header on a file of
    `size` bytes; None when the header can be served."""
    try:
        FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        message = f"bad Range header ({exc.content}); send e.g. 'Range: bytes=0-1023'"
        return JSONResponse(error_body("bad_range", message), status_code=400)
    except Unsatisfiable:
        return JSONResponse(
            error_body("range_not_satisfiable", f"the file has {size} bytes"),
            status_code=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    return None
