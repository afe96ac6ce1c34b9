"""A real webhook receiver for the tests: `python -m tests.integration.webhook_receiver PORT
LOGFILE [STATUS]`.

It listens on 127.0.0.1:PORT, answers every POST with STATUS (default 204; a 3xx answer
points back at itself, to show the sender does not follow it; 0: trickles a byte of the
status line every half second, to show the sender's deadline), and appends one JSON line per
request to LOGFILE: the path, the headers (lower-cased) and the raw body as text. It knows
nothing of Deadweight: the tests verify the signatures from what it logged.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(port: int, log: Path, status: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            entry = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8"),
            }
            with log.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")
            if status == 0:
                for byte in b"HTTP/1.1 204 No Content\r\n" * 100:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", f"http://127.0.0.1:{port}/redirected")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the log file is the record

    with ThreadingHTTPServer(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 204)
