"""The API's memory while it receives the largest uploads it allows, all at once.

Starts a real `deadweight serve --no-worker` on 127.0.0.1 with a temporary data directory,
then uploads concurrently the largest file of every format the upload limit allows (a
dataset as .npz, .safetensors and .csv, and a model archive) plus the hostile files of
`tests/hostile/costly_datasets.py`, sampling from /proc the resident memory of the API
process and, separately, of its children (the validation processes). Prints idle, peak and
peak - idle, and exits 1 when the API grew by more than `--bound-mb`.

    python -m bench.upload_memory                          # 64 MiB files (this machine)
    python -m bench.upload_memory --max-upload-bytes 2147483648   # the default limit

NumPy only, no torch: a model archive is checked for its structure, so a zip of the right
entry names with one large stored weight stands for a real one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from tests.hostile.costly_datasets import CORPUS

MIB = 1024 * 1024
SAMPLE_S = 0.02
FORM_MARGIN = 64 * 1024  # below the limit: the form's own bytes count toward it


@dataclass(frozen=True)
class Upload:
    name: str
    path: Path
    route: str  # "datasets" or "models"


@dataclass
class Memory:
    api_peak: int = 0
    children_peak: int = 0


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


def _sample(pid: int, memory: Memory, stop: threading.Event) -> None:
    while not stop.is_set():
        memory.api_peak = max(memory.api_peak, _rss(pid))
        children = sum(_rss(c) for c in _descendants(pid))
        memory.children_peak = max(memory.children_peak, children)
        time.sleep(SAMPLE_S)


def _largest_files(folder: Path, limit: int) -> list[Upload]:
    """One file of each format, each as large as the limit allows (less the form's margin)."""
    size = limit - FORM_MARGIN
    width = 256
    rows = max(1, (size - 4096) // (width * 4))
    rng = np.random.default_rng(0)
    x = rng.random((rows, width), dtype=np.float32)  # random: no compression helps the API
    npz = folder / "largest.npz"
    np.savez(npz, x=x)
    safetensors = folder / "largest.safetensors"
    _write_safetensors(safetensors, x)
    del x
    csv = folder / "largest.csv"
    _write_csv(csv, size)
    model = folder / "largest.pt2"
    _write_model(model, size)
    return [
        Upload("largest .npz", npz, "datasets"),
        Upload("largest .safetensors", safetensors, "datasets"),
        Upload("largest .csv", csv, "datasets"),
        Upload("largest .pt2 (structure only)", model, "models"),
    ]


def _write_safetensors(path: Path, x: npt.NDArray[np.float32]) -> None:
    header = json.dumps(
        {"x": {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, x.nbytes]}}
    ).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.write(np.ascontiguousarray(x).data)


def _write_csv(path: Path, size: int) -> None:
    columns = 32
    rng = np.random.default_rng(1)
    block = (
        "\n".join(",".join(f"{v:.6f}" for v in row) for row in rng.random((2000, columns))) + "\n"
    )
    with path.open("w") as f:
        header = ",".join(f"f{i}" for i in range(columns)) + "\n"
        f.write(header)
        written = len(header)
        while written + len(block) <= size:
            f.write(block)
            written += len(block)


def _write_model(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("m/models/model.json", b"{}")
        zf.writestr("m/archive_format", b"pt2")
        with zf.open("m/data/weights/weight_0", "w", force_zip64=True) as member:
            left = size - 4096
            chunk = os.urandom(MIB)
            while left > 0:
                member.write(chunk[: min(MIB, left)])
                left -= MIB


def _hostile_files(folder: Path) -> list[Upload]:
    uploads = []
    for hostile in CORPUS:
        path = hostile.build(folder / hostile.filename)
        route = "models" if hostile.kind == "model_archive" else "datasets"
        uploads.append(Upload(f"hostile: {hostile.name}", path, route))
    return uploads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(data_dir: Path, limit: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DEADWEIGHT_DATA_DIR": str(data_dir),
        "DEADWEIGHT_MAX_UPLOAD_BYTES": str(limit),
        # One tenant sends everything at once here: lift its in-flight cap, not the others.
        "DEADWEIGHT_TENANT_UPLOADS_IN_FLIGHT": "64",
        "DEADWEIGHT_TENANT_PENDING_INSPECTIONS": "64",
        "DEADWEIGHT_MIN_FREE_DISK_BYTES": "0",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("DEADWEIGHT_API_KEYS", None)
    command = [sys.executable, "-m", "service.cli", "serve", "--no-worker"]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(proc, port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"the server exited with status {proc.returncode}:\n{err}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the server did not become ready within 60 s")


def _send(port: int, upload: Upload) -> tuple[Upload, int, str, float]:
    start = time.monotonic()
    with upload.path.open("rb") as f, httpx.Client(timeout=600) as client:
        response = client.post(
            f"http://127.0.0.1:{port}/v1/{upload.route}",
            files={"file": (upload.path.name, f, "application/octet-stream")},
        )
    detail = ""
    if response.status_code >= 400:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = str(response.json()["error"]["message"])[:90]
    return upload, response.status_code, detail, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-upload-bytes", type=int, default=64 * MIB)
    parser.add_argument("--bound-mb", type=float, default=300.0, help="allowed peak - idle")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dw-upload-memory-") as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        print(f"building files (largest: {args.max_upload_bytes / MIB:.0f} MiB) ...")
        uploads = _largest_files(folder, args.max_upload_bytes) + _hostile_files(folder)
        port = _free_port()
        with _server(Path(tmp) / "data", args.max_upload_bytes, port) as proc:
            time.sleep(1.0)
            idle = max(_rss(proc.pid) for _ in range(5))
            memory, stop = Memory(api_peak=idle), threading.Event()
            sampler = threading.Thread(target=_sample, args=(proc.pid, memory, stop))
            sampler.start()
            try:
                with ThreadPoolExecutor(len(uploads)) as pool:
                    results = list(pool.map(lambda u: _send(port, u), uploads))
            finally:
                stop.set()
                sampler.join()
    for upload, status, detail, seconds in results:
        print(f"{status}  {seconds:6.1f} s  {upload.name}" + (f": {detail}" if detail else ""))
    growth = memory.api_peak - idle
    print(f"API idle RSS:        {idle / MIB:8.1f} MiB")
    print(f"API peak RSS:        {memory.api_peak / MIB:8.1f} MiB")
    print(f"API peak - idle:     {growth / MIB:8.1f} MiB (bound {args.bound_mb:.0f} MiB)")
    print(f"children peak RSS:   {memory.children_peak / MIB:8.1f} MiB (validation processes)")
    errors = [r for r in results if r[1] >= 500]
    if errors:
        print(f"{len(errors)} upload(s) answered 5xx")
    return 1 if growth > args.bound_mb * MIB or errors else 0


if __name__ == "__main__":
    sys.exit(main())
