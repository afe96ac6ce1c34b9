"""The yardstick for uploads: a bare ASGI app on uvicorn that streams a request body to disk.

No framework, no multipart parsing, no hashing, no validation: the least a server does to
receive a file. `bench.upload_rate` sends it the same multipart requests as `deadweight
serve`, alternately, and reports deadweight's throughput as a share of this one's.

    .venv/bin/python -m bench.plain_receiver --port 8123 --folder /tmp/received
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def app_for(folder: Path) -> Callable[..., Awaitable[None]]:
    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        with tempfile.NamedTemporaryFile(dir=folder, delete=True) as out:
            more = True
            while more:
                message = await receive()
                out.write(message.get("body", b""))
                more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    uvicorn.run(app_for(args.folder), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
