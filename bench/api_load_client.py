"""The load generator of `bench.api_load`: N keep-alive HTTP/1.1 connections to each of two
servers, one request in flight on each, the servers loaded in turn (A B B A A B ...) in
short slices; prints one JSON line with each server's figures.

It runs in a process of its own, so no server under test shares its interpreter. It is raw
asyncio (a `Protocol` per connection, the request bytes built once, responses parsed by
Content-Length only), so it costs far less per request than the servers it drives;
`--trivial` serves fixed bytes from a bare asyncio server, for `bench.api_load` to show that.

Short alternating slices make both servers see the same machine: this one is shared, and
its load changes within seconds. A server's process CPU time per request (from /proc, when
its pid is given) is reported beside its throughput: it depends far less on that load.

    python -m bench.api_load_client --spec '{"targets": [{"port": 8000, "path": "/healthz"},
        {"port": 8001, "path": "/healthz"}], "connections": 2, "pairs": 5, "slice": 1.0}'
    python -m bench.api_load_client --trivial 8002      # the fixed-bytes server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

HEAD_END = b"\r\n\r\n"
_TICKS = os.sysconf("SC_CLK_TCK")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends its request again as soon as it is answered, while
    its target is active."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.target.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        length = _content_length(head)
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.target.answered(self, head, time.perf_counter() - self.sent_at)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.target.active:
            self.target.errors += 1  # the server closed a connection it should have kept
        self.target.idle(self)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0  # every answer measured here has a Content-Length


class _Target:
    """One server: its connections, and what its slices measured."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.port = int(spec["port"])
        lines = [f"GET {spec['path']} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        self.request = ("\r\n".join([*lines, *spec.get("headers", [])]) + "\r\n\r\n").encode()
        self.pid: int | None = spec.get("pid")
        self.connections: list[_Connection] = []
        self.active = False
        self.recording = False
        self.busy: set[_Connection] = set()
        self.drained = asyncio.Event()
        self.latencies: list[float] = []
        self.slice_count = 0
        self.errors = 0
        self.rps: list[float] = []
        self.cpu_ms: list[float] = []

    async def connect(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, connection = await loop.create_connection(
                lambda: _Connection(self), "127.0.0.1", self.port
            )
            self.connections.append(connection)

    def answered(self, connection: _Connection, head: bytes, seconds: float) -> None:
        if self.recording:
            self.slice_count += 1
            self.latencies.append(seconds)
            if not head.startswith(b"HTTP/1.1 200"):
                self.errors += 1
        if self.active:
            connection.send()
        else:
            self.idle(connection)

    def idle(self, connection: _Connection) -> None:
        self.busy.discard(connection)
        if not self.busy:
            self.drained.set()

    def start(self) -> None:
        self.active = True
        self.drained.clear()
        self.busy = set(self.connections)
        for connection in self.connections:
            connection.send()

    async def stop(self) -> None:
        self.active = False
        await asyncio.wait_for(self.drained.wait(), 60)

    async def run_slice(self, seconds: float, record: bool) -> None:
        self.slice_count = 0
        self.recording = record
        cpu = _cpu_seconds(self.pid)
        started = time.perf_counter()
        self.start()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - started
        self.recording = False  # what completes while draining is not counted
        count = self.slice_count
        await self.stop()
        if record and count:
            self.rps.append(count / elapsed)
            if cpu is not None:
                self.cpu_ms.append(1000 * ((_cpu_seconds(self.pid) or cpu) - cpu) / count)

    def figures(self) -> dict[str, Any]:
        done = sorted(self.latencies)
        return {
            "rps": self.rps,
            "cpu_ms": self.cpu_ms,
            "p50_ms": 1000 * done[len(done) // 2] if done else float("nan"),
            "p99_ms": 1000 * done[min(len(done) - 1, int(len(done) * 0.99))] if done else 0.0,
            "errors": self.errors,
        }


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, all its threads; None without a pid."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Slices of `slice` seconds, A B B A ...: `pairs` each, after a warm-up slice each."""
    targets = [_Target(t) for t in spec["targets"]]
    for target in targets:
        await target.connect(int(spec["connections"]))
    seconds = float(spec.get("slice", 1.0))
    for target in targets:
        await target.run_slice(seconds / 2, record=False)
    for pair in range(int(spec["pairs"])):
        for target in targets if pair % 2 == 0 else reversed(targets):
            await target.run_slice(seconds, record=True)
    for target in targets:
        for connection in target.connections:
            assert connection.transport is not None
            connection.transport.close()
    return {"targets": [target.figures() for target in targets]}


_FIXED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n"
    b'{"status":"ok"}'
)


class _Trivial(asyncio.Protocol):
    """The cheapest server: a fixed answer for every request head received."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        heads = (self.pending + data).split(HEAD_END)
        self.pending = heads.pop()
        self.transport.write(_FIXED * len(heads))


async def _serve_trivial(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="JSON: targets (port, path, headers, pid), connections...")
    parser.add_argument("--trivial", type=int, metavar="PORT", help="serve fixed bytes instead")
    args = parser.parse_args()
    if args.trivial:
        asyncio.run(_serve_trivial(args.trivial))
        return
    print(json.dumps(asyncio.run(drive(json.loads(args.spec)))), flush=True)


if __name__ == "__main__":
    main()
