"""A small Llama-style decoder pruned by heads and SwiGLU channels, with and without recovery.

For every seed: trains `tests.zoo.llama_decoder.LlamaDecoder` (2 layers, 8 query heads on 2
kv heads, SwiGLU 128, width 64) on the reversal task for 250 steps, exports it with a
dynamic batch, and runs the engine (`pruning.run`, what `deadweight prune` runs) once
without and once with recovery over the fractions, with the given allocation and linear
compensation, calibrating (and recovering) on training sequences and scoring on 1,000
held-out ones. It then reads each downloaded program back and measures the next-token
cross-entropy on the answer positions (from the delimiter on) itself: the engine's own
metric is per-token accuracy, it has no cross-entropy metric.

    .venv/bin/python -m bench.llama_decoder
    .venv/bin/python -m bench.llama_decoder --seeds 0 --fractions 0.4 --allocation global
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from jobs.job_config import Allocation, Compensation, Metric
from pruning import DataInput, PruneConfig, Recovery, Threshold, read_program, run
from pruning.results import Candidate, Results

# The model lives with the test that prunes it (`tests.zoo.llama_decoder`). Imported by name:
# a plain import makes mypy check the whole `tests.zoo` package, whose models are not
# written for its strict mode.
decoder = importlib.import_module("tests.zoo.llama_decoder")
HEADS: int = decoder.HEADS
KV_HEADS: int = decoder.KV_HEADS


@dataclass(frozen=True)
class Row:
    seed: int
    fraction: float
    recovery_epochs: int | None  # None: no recovery
    loss_before: float  # the original's cross-entropy on the answer positions, nats
    loss_after: float
    accuracy_before: float  # the engine's metric: per-token accuracy, all positions
    accuracy_after: float
    parameters_before: int
    parameters_after: int
    kv_heads_kept: list[int]  # per layer, of KV_HEADS (each with its 4 query heads)
    mlp_cut: float  # share of the SwiGLU channels cut
    stream_cut: float  # share of the residual stream's channels cut
    seconds: float  # the engine's run, all fractions together

    @property
    def reduction(self) -> float:
        return 1 - self.parameters_after / self.parameters_before


def _cut(candidate: Candidate, kind: str) -> float:
    """The share of the named groups' channels the candidate cut."""
    names = [n for n in candidate.kept if kind in n]
    kept = sum(candidate.kept[n] for n in names)
    full = sum(round(candidate.kept[n] / candidate.kept_fraction[n]) for n in names)
    return 1 - kept / full


def measure(
    seed: int,
    fractions: list[float],
    allocation: Allocation,
    recovery: Recovery | None,
    calibration: int,
    folder: Path,
) -> list[Row]:
    """One seed's decoder, pruned at every fraction in one run of the engine."""
    training, validation = decoder.reversal_task(6000, seed=0).split(1000)
    path = folder / f"decoder-{seed}.pt2"
    if not path.exists():
        decoder.export_decoder(decoder.train(training, seed=seed), path)
    original = read_program(path).module()
    out = folder / f"out-{seed}-{recovery is not None}"
    out.mkdir(exist_ok=True)
    config = PruneConfig(
        thresholds=tuple(Threshold(fraction=f) for f in fractions),
        allocation=allocation,
        compensate=Compensation.LINEAR,
        recovery=recovery,
        metric=Metric.ACCURACY,
        measure_latency=False,
    )
    data = DataInput.of(training.x[:calibration], training.y[:calibration])
    started = time.monotonic()
    results = run(path, data, DataInput.of(validation.x, validation.y), config, out)
    seconds = time.monotonic() - started
    before: float = decoder.sequence_loss(original, validation)
    epochs = None if recovery is None else recovery.epochs
    return [
        _row(seed, epochs, c, results, out, before, validation, seconds) for c in results.candidates
    ]


def _row(
    seed: int,
    epochs: int | None,
    c: Candidate,
    results: Results,
    out: Path,
    before: float,
    validation: Any,  # tests.zoo.llama_decoder.Task
    seconds: float,
) -> Row:
    pruned = read_program(out / c.artifact).module()
    return Row(
        seed=seed,
        fraction=float(c.threshold["fraction"]),
        recovery_epochs=epochs,
        loss_before=before,
        loss_after=decoder.sequence_loss(pruned, validation),
        accuracy_before=results.baseline.metric,
        accuracy_after=c.metric,
        parameters_before=results.baseline.parameters,
        parameters_after=c.parameters,
        kv_heads_kept=[c.kept[n] for n in c.kept if "attention" in n],
        mlp_cut=_cut(c, "gate_proj"),
        stream_cut=_cut(c, "embed_tokens"),
        seconds=seconds,
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| seed | fraction | recovery | loss: original | pruned | change | fewer parameters "
        f"| kv heads kept (of {KV_HEADS}, with {HEADS // KV_HEADS} query heads each), per layer "
        "| SwiGLU channels cut | residual stream cut |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.seed} | f{r.fraction:g} | {_epochs(r.recovery_epochs)} "
            f"| {r.loss_before:.4f} | {r.loss_after:.4f} | {r.loss_after - r.loss_before:+.4f} "
            f"| {r.reduction:.1%} | {', '.join(map(str, r.kv_heads_kept))} "
            f"| {r.mlp_cut:.1%} | {r.stream_cut:.1%} |"
        )
    return "\n".join(lines)


def _epochs(epochs: int | None) -> str:
    return "none" if epochs is None else f"{epochs} epochs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3", help="training seeds (default 0,1,2,3)")
    parser.add_argument("--fractions", default="0.3,0.4,0.5", help="default 0.3,0.4,0.5")
    parser.add_argument("--allocation", default="uniform", choices=["uniform", "global"])
    parser.add_argument("--epochs", type=int, default=2, help="recovery epochs (default 2)")
    parser.add_argument("--lr", type=float, default=5e-3, help="recovery lr (default 5e-3)")
    parser.add_argument("--calibration", type=int, default=3000, help="sequences (3000)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the suite runs, and figures comparable across machines
    fractions = [float(f) for f in args.fractions.split(",")]
    recovery = Recovery(epochs=args.epochs, lr=args.lr)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for rec in (None, recovery):
                got = measure(
                    seed, fractions, Allocation(args.allocation), rec, args.calibration, Path(tmp)
                )
                rows += got
                print("\n".join(table(got).splitlines()[2:]), flush=True)  # as they come
    print(table(sorted(rows, key=lambda r: (r.fraction, r.recovery_epochs or 0, r.seed))))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
