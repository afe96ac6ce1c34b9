"""A TCP proxy in front of the real service, to cause the network failures a client must
survive: a port that refuses connections until it opens, and a submission whose answer is
lost after the service has acted on it."""

from __future__ import annotations

import contextlib
import socket
import threading

SUBMISSION = b"POST /v1/jobs HTTP/1.1"


class Proxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target`. Refuses connections until `open()`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port: int = self._sock.getsockname()[1]
        self.submissions = 0  # POST /v1/jobs requests that reached the service
        self._drop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        self._sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_submission_answer(self) -> None:
        """The next POST /v1/jobs reaches the service; its answer never reaches the client
        (the connection is closed instead), as when a load balancer times out."""
        self._drop.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            carries_submission = threading.Event()
            threading.Thread(
                target=self._forward, args=(conn, upstream, carries_submission), daemon=True
            ).start()
            threading.Thread(
                target=self._answer, args=(upstream, conn, carries_submission), daemon=True
            ).start()

    def _forward(self, src: socket.socket, dst: socket.socket, submission: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if SUBMISSION in chunk:
                    self.submissions += 1
                    submission.set()  # before the request goes on: its answer is seen later
                dst.sendall(chunk)
        _close(dst, src)

    def _answer(self, src: socket.socket, dst: socket.socket, submission: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if submission.is_set() and self._drop.is_set():
                    self._drop.clear()
                    break  # the service answered; the client will never know
                dst.sendall(chunk)
        _close(dst, src)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()
