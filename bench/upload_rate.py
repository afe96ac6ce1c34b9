"""Upload throughput and the API's peak RSS for a 200 MB dataset (.npz) and a 100 MB model.

`deadweight serve --no-worker` is started as `bench.upload_memory` starts it (its helpers:
the server, the /proc sampler, the sender, the structure-only model archive), next to the
bare streaming receiver of `bench.plain_receiver`. Each round sends each file to both,
alternately; the report gives deadweight's MB/s (10^6 bytes per second), its throughput as
a share of the plain receiver's, per file, and the API's peak RSS over the whole run.

    .venv/bin/python -m bench.upload_rate [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import spread
from bench.upload_memory import (
    MIB,
    Memory,
    Upload,
    _free_port,
    _rss,
    _sample,
    _send,
    _server,
    _write_model,
)

MB = 1_000_000
DATASET_BYTES = 200 * MB
MODEL_BYTES = 100 * MB


@dataclass
class UploadRates:
    mb_per_s: dict[str, list[float]] = field(default_factory=dict)
    vs_plain: dict[str, list[float]] = field(default_factory=dict)  # deadweight / plain
    idle_rss: int = 0
    peak_rss: int = 0


def _files(folder: Path) -> list[Upload]:
    rng = np.random.default_rng(0)
    x = rng.random((DATASET_BYTES // (256 * 4), 256), dtype=np.float32)  # incompressible
    npz = folder / "dataset-200MB.npz"
    np.savez(npz, x=x)
    model = folder / "model-100MB.pt2"
    _write_model(model, MODEL_BYTES)
    return [
        Upload("200 MB dataset (.npz)", npz, "datasets"),
        Upload("100 MB model", model, "models"),
    ]


@contextlib.contextmanager
def _plain(folder: Path, port: int) -> Iterator[None]:
    command = [sys.executable, "-m", "bench.plain_receiver", "--port", str(port)]
    proc = subprocess.Popen([*command, "--folder", str(folder)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait()


def _rate(port: int, upload: Upload) -> float:
    _, status, detail, seconds = _send(port, upload)
    if status != 201:
        raise RuntimeError(f"{upload.name}: answered {status} {detail}")
    return upload.path.stat().st_size / MB / seconds


def measure(rounds: int) -> UploadRates:
    result = UploadRates()
    with tempfile.TemporaryDirectory(prefix="dw-upload-rate-") as tmp:
        folder = Path(tmp)
        uploads = _files(folder)
        limit = 2 * DATASET_BYTES
        port, plain_port = _free_port(), _free_port()
        with _server(folder / "data", limit, port) as proc, _plain(folder / "plain", plain_port):
            time.sleep(1.0)
            result.idle_rss = max(_rss(proc.pid) for _ in range(5))
            memory, stop = Memory(api_peak=result.idle_rss), threading.Event()
            sampler = threading.Thread(target=_sample, args=(proc.pid, memory, stop))
            sampler.start()
            try:
                for _ in range(rounds):
                    for upload in uploads:
                        ours, plain = _rate(port, upload), _rate(plain_port, upload)
                        result.mb_per_s.setdefault(upload.name, []).append(ours)
                        result.vs_plain.setdefault(upload.name, []).append(ours / plain)
            finally:
                stop.set()
                sampler.join()
            result.peak_rss = memory.api_peak
    return result


def lines(result: UploadRates) -> list[str]:
    out = []
    for name, rates in result.mb_per_s.items():
        out.append(
            f"upload {name}: {spread(rates, ' MB/s', 0)}; deadweight / plain receiver "
            f"{spread(result.vs_plain[name])}"
        )
    out.append(
        f"API RSS: idle {result.idle_rss / MIB:.0f} MiB, peak {result.peak_rss / MIB:.0f} MiB "
        f"(+{(result.peak_rss - result.idle_rss) / MIB:.0f} MiB)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(lines(measure(args.rounds))))


if __name__ == "__main__":
    main()
