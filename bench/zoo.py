"""Zoo acceptance: `deadweight prune` on real torchvision classifiers, no per-model settings.

For every model: build it (random weights, BatchNorm statistics calibrated on the data),
export it with `torch.export`, write random images labelled with the model's own
predictions, run `deadweight prune model.pt2 data.npz --criterion variance --thresholds f0.3
--allocation uniform` as a user would (a subprocess), then load the pruned program and check
that it has at least 5 % fewer parameters and the same output shape. Prints one table row
per model (with the attention heads kept, where the model has head groups) and exits 1 if
any model fails.

The weights are random, so what is checked is structure: that every group can be cut and
the result loads and runs. `uniform` takes 30 % of the units of every group, so every
group's surgery is exercised; the service's default, `global`, ranks removals across groups
by their scores, and on random weights those rank mostly noise (after a LayerNorm every
residual channel, and every random head, looks alike), so it leaves most groups whole.

    make zoo                                   # every family of FAMILIES
    .venv/bin/python -m bench.zoo resnet18 swin_t --size 64
    .venv/bin/python -m bench.zoo vit_b_16 swin_t --size 224 --allocation global
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.torchvision_models import FAMILIES, build, calibrate_batchnorm
from jobs.job_config import RESULTS_JSON
from pruning.graph import analyse

MIN_REDUCTION = 0.05


@dataclass
class Outcome:
    name: str
    ok: bool
    params: int = 0
    pruned_params: int = 0
    prunable: int = 0
    frozen: int = 0
    heads: int = 0  # attention heads in head groups (a GQA unit counts its kv head once)
    heads_kept: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def reduction(self) -> float:
        return 1 - self.pruned_params / self.params if self.params else 0.0

    def row(self) -> str:
        verdict = "ok" if self.ok else f"FAIL {self.error}"
        heads = f"{self.heads_kept}/{self.heads}" if self.heads else "-"
        return (
            f"{self.name:22} {self.params:>11,} {self.pruned_params:>11,} {self.reduction:>6.1%} "
            f"{self.prunable:>7} {self.frozen:>6} {heads:>9} {self.seconds:>5.0f} {verdict}"
        )


_HEADER = (
    f"{'model':22} {'params':>11} {'pruned':>11} {'cut':>6} {'groups':>7} {'frozen':>6} "
    f"{'heads':>9} {'secs':>5}"
)


def prepare(
    name: str, work: Path, size: int, samples: int, export_batch: int
) -> tuple[Path, Path, torch.Size]:
    """Export `name` and write its dataset; returns (model path, data path, output shape)."""
    torch.manual_seed(1)
    images = torch.randn(samples, 3, size, size)
    model = build(name, size)
    calibrate_batchnorm(model, images)
    with torch.no_grad():
        logits = torch.cat(
            [model(images[i : i + export_batch]) for i in range(0, samples, export_batch)]
        )
    model_path, data_path = work / f"{name}.pt2", work / f"{name}.npz"
    torch.export.save(torch.export.export(model, (images[:export_batch],)), model_path)
    np.savez(data_path, x=images.numpy(), y=logits.argmax(1).numpy())
    return model_path, data_path, logits.shape[1:]


def check(
    name: str,
    work: Path,
    size: int,
    samples: int,
    export_batch: int,
    criterion: str = "variance",
    latency: bool = True,
    allocation: str = "uniform",
) -> Outcome:
    started = time.monotonic()
    model_path, data_path, out_shape = prepare(name, work, size, samples, export_batch)
    out = work / f"{name}-out"
    cmd = [
        sys.executable,
        "-m",
        "service.cli",
        "prune",
        str(model_path),
        str(data_path),
        "--criterion",
        criterion,
        "--thresholds",
        "f0.3",
        "--allocation",
        allocation,
        "--batch-size",
        str(export_batch),
        "--out",
        str(out),
        *([] if latency else ["--no-latency"]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return Outcome(
            name,
            False,
            seconds=time.monotonic() - started,
            error=f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}",
        )
    results = json.loads((out / RESULTS_JSON).read_text())
    candidate = results["candidates"][0]
    pruned = torch.export.load(out / candidate["artifact"])
    # As the engine counts: parameters only, not buffers such as BatchNorm statistics.
    params = sum(p.numel() for p in pruned.parameters())
    with torch.no_grad():
        y = pruned.module()(torch.randn(export_batch, 3, size, size))
    outcome = Outcome(
        name,
        True,
        params=results["baseline"]["parameters"],
        pruned_params=params,
        prunable=len(results["layers"]),
        frozen=len(results["frozen"]),
        seconds=time.monotonic() - started,
    )
    analysis = analyse(torch.export.load(model_path).module())
    heads = [g for g in analysis.prunable if g.kind == "head"]
    outcome.heads = sum(g.width for g in heads)
    outcome.heads_kept = sum(int(candidate["kept"][g.name]) for g in heads)
    if params != candidate["parameters"]:
        outcome.ok, outcome.error = (
            False,
            f"file has {params} parameters, results say {candidate['parameters']}",
        )
    elif y.shape[1:] != out_shape:
        outcome.ok, outcome.error = (
            False,
            f"output shape {tuple(y.shape[1:])}, expected {tuple(out_shape)}",
        )
    elif outcome.reduction < MIN_REDUCTION:
        outcome.ok, outcome.error = False, f"only {outcome.reduction:.1%} fewer parameters"
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models", nargs="*", help="torchvision builder names (default: every family)"
    )
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument(
        "--samples", type=int, default=64, help="images in the dataset (default 64)"
    )
    parser.add_argument(
        "--batch", type=int, default=16, help="export and prune batch size (default 16)"
    )
    parser.add_argument(
        "--criterion",
        default="variance",
        choices=["variance", "reconstruction", "seed"],
        help="the criterion to prune with (default variance)",
    )
    parser.add_argument(
        "--allocation",
        default="uniform",
        choices=["global", "uniform"],
        help="how f0.3 is spread across layers (default uniform: every group is cut; global is "
        "the service's default)",
    )
    args = parser.parse_args(argv)
    names = args.models or [n for members in FAMILIES.values() for n in members]
    failed = 0
    print(_HEADER)
    with tempfile.TemporaryDirectory(prefix="deadweight-zoo-") as tmp:
        for name in names:
            try:
                o = check(
                    name,
                    Path(tmp),
                    args.size,
                    args.samples,
                    args.batch,
                    args.criterion,
                    allocation=args.allocation,
                )
            except Exception as exc:  # a failure to build or export is a failed row, not a crash
                o = Outcome(name, False, error=f"{type(exc).__name__}: {exc}")
            failed += not o.ok
            print(o.row(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
