"""`GET /v1/jobs/{id}` and `GET /healthz` of `deadweight serve` against a minimal FastAPI app
on the same uvicorn with the same settings, reading the same row from the same database
(issue 12: at least 0.7x its throughput, p99 under 50 ms, on 2 and 16 connections, while a
real worker runs a pruning job).

`deadweight serve` starts as users start it (a temporary data directory, SQLite and the
filesystem broker by default, its embedded workers); the example model and data are uploaded
and a job is submitted whose recovery keeps the worker busy for the whole measurement. The
yardstick is `bench.api_load_baseline`. The load comes from `bench.api_load_client`, a
process of its own, which loads the two servers in turn in short slices (A B B A ...); the
throughput ratio is the median of the ratios of neighbouring slices, with its spread
(min-max), since the machine is shared. Each server's CPU time per request is reported too:
it depends far less on what else runs. The load generator's ceiling, against a bare asyncio
server, is printed first.

    .venv/bin/python -m bench.api_load [--quick] [--no-job] [--api-key]
        [--database-url postgresql://postgres@127.0.0.1/test --broker-url redis://127.0.0.1/12]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api_load_setup import (
    PY,
    Processes,
    cancel_job,
    free_port,
    postgres_database,
    start_service,
    wait_http,
)

CONNECTIONS = (2, 16)
HEADER = (
    "| endpoint, connections | req/s ratio | deadweight req/s | p50 / p99 ms | minimal req/s "
    "| p50 / p99 ms | CPU per request ratio |"
)


def _drive(targets: list[dict[str, Any]], connections: int, pairs: int, seconds: float) -> Any:
    spec = {"targets": targets, "connections": connections, "pairs": pairs, "slice": seconds}
    command = [PY, "-m", "bench.api_load_client", "--spec", json.dumps(spec)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])["targets"]


def _ratios(a: list[float], b: list[float]) -> str:
    ratios = [x / y for x, y in zip(a, b, strict=False) if y]
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def _row(label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    errors = ours["errors"] + theirs["errors"]
    return [
        label + (f" ({errors} non-200 or dropped)" if errors else ""),
        _ratios(ours["rps"], theirs["rps"]),
        f"{statistics.median(ours['rps']):.0f}",
        f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f}",
        f"{statistics.median(theirs['rps']):.0f}",
        f"{theirs['p50_ms']:.1f} / {theirs['p99_ms']:.1f}",
        _ratios(ours["cpu_ms"], theirs["cpu_ms"]),
    ]


def _ceiling(procs: Processes, env: dict[str, str], seconds: float) -> float:
    """Requests per second the load generator achieves against a server that costs nothing."""
    port = free_port()
    command = [PY, "-m", "bench.api_load_client", "--trivial", str(port)]
    trivial = procs.start("trivial", command, env)
    time.sleep(0.5)
    target = {"port": port, "path": "/healthz"}
    figures = _drive([target], 16, 2, seconds)
    trivial.terminate()
    trivial.wait()
    return float(statistics.median(figures[0]["rps"]))


def _environment(args: argparse.Namespace, tmp: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEADWEIGHT_")}
    env["DEADWEIGHT_DATA_DIR"] = str(tmp / "data")
    if args.api_key:
        env["DEADWEIGHT_API_KEYS"] = f"default={secrets.token_urlsafe(24)}"  # the baseline's
    if database_url:
        env["DEADWEIGHT_DATABASE_URL"] = database_url
    if args.broker_url:
        env["DEADWEIGHT_BROKER_URL"] = args.broker_url
    return env


def run(args: argparse.Namespace, tmp: Path, procs: Processes, database_url: str | None) -> None:
    env = _environment(args, tmp, database_url)
    key = env.get("DEADWEIGHT_API_KEYS", "=").split("=", 1)[1]
    headers = [f"Authorization: Bearer {key}"] if key else []
    pairs, seconds = (4, 0.75) if args.quick else (args.pairs, args.seconds)
    port = free_port()
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as client:
        serve_pid, job_id = start_service(procs, env, tmp, client, keep_running=not args.no_job)
        url = database_url or f"sqlite:///{tmp / 'data' / 'deadweight.db'}"
        base_port = free_port()
        command = [PY, "-m", "bench.api_load_baseline", "--port", str(base_port)]
        baseline = procs.start("baseline", [*command, "--database-url", url], env)
        wait_http(f"http://127.0.0.1:{base_port}/healthz", baseline, procs, "baseline")
        probe = httpx.get(f"http://127.0.0.1:{base_port}/v1/jobs/{job_id}")
        probe.raise_for_status()  # the yardstick reads the same row
        ceiling = _ceiling(procs, env, seconds)
        print(f"load generator against a bare asyncio server: {ceiling:.0f} req/s", flush=True)

        table: list[list[str]] = []
        fastest = 0.0
        for path in (f"/v1/jobs/{job_id}", "/healthz"):
            ours = {"port": port, "path": path, "headers": headers, "pid": serve_pid}
            theirs = {"port": base_port, "path": path, "pid": baseline.pid}
            for connections in CONNECTIONS:
                a, b = _drive([ours, theirs], connections, pairs, seconds)
                name = "/v1/jobs/{id}" if path != "/healthz" else path
                row = _row(f"{name}, {connections}", a, b)
                print(
                    f"{row[0]}: ratio {row[1]}; deadweight {row[2]} req/s, p50/p99 {row[3]} ms;"
                    f" minimal app {row[4]} req/s, {row[5]} ms; CPU/request {row[6]}",
                    flush=True,
                )
                table.append(row)
                fastest = max(fastest, *a["rps"], *b["rps"])
        if not args.no_job:
            status = client.get(f"/v1/jobs/{job_id}").json()
            still = status["status"] == "running"
            print(
                f"job {status['status']} at the end ({status['progress']['stage']})"
                + ("" if still else ": it did NOT run through the whole measurement")
            )
            cancel_job(client, job_id)

    backend = "PostgreSQL" if database_url else "SQLite"
    during = "no job running" if args.no_job else "a pruning job running in the embedded worker"
    auth_mode = "an API key" if key else "open mode"
    print(
        f"\n{backend}, {auth_mode}, {during}; {pairs} pairs of {seconds:g} s slices per row; "
        "ratios are deadweight / minimal app (median, min-max of neighbouring slices); the "
        f"load generator's ceiling is {ceiling / fastest:.1f}x the fastest server measured\n"
    )
    print(HEADER)
    print("|---" * 7 + "|")
    for row in table:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 pairs of 0.75 s slices")
    parser.add_argument("--pairs", type=int, default=10, help="slices per server and row")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of a slice")
    parser.add_argument("--no-job", action="store_true", help="measure with the worker idle")
    parser.add_argument("--api-key", action="store_true", help="serve with an API key")
    parser.add_argument("--database-url", help="a PostgreSQL server (a database is created)")
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="api-load-", ignore_cleanup_errors=True) as name,
        postgres_database(args.database_url) as database_url,
    ):
        tmp = Path(name)
        (tmp / "logs").mkdir()
        procs = Processes(tmp / "logs")
        try:
            run(args, tmp, procs, database_url)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
