"""The job of `deadweight prune`, written by hand with Torch-Pruning (issue 12's second ratio).

What a competent user with the model's code would write to do the same job: rebuild the
module and load its weights, one statistics pass over the calibration data (the mean
absolute input of every Linear and Conv layer, accumulated over all batches: Torch-Pruning's
own `ActivationImportance` keeps only the last batch's), then for every fraction a copy of
the model pruned by `MetaPruner` with global pruning at that ratio (the classifier's outputs
kept), exported and saved as `pruned-<i>.pt2`, and evaluated (top-1 accuracy against the
labels) on the evaluation data. The benchmark runs it as a user would, in a fresh process:

    .venv/bin/python -m bench.tp_script mlp weights.pt data.npz --fractions 0.1,0.2 --out DIR
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch_pruning as tp  # type: ignore[import-untyped, unused-ignore]
from torch import nn

from bench.common import SPECS
from bench.transformer_model import Attention, TinyTransformer


class AccumulatedActivation(tp.importance.ActivationImportance):  # type: ignore[misc]
    """Torch-Pruning's activation importance, summed over every calibration batch."""

    @contextmanager
    def compute_importance(self, model: nn.Module) -> Iterator[None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _: object) -> None:
            x = inputs[0].detach().abs()
            dims = (0, 2, 3) if isinstance(module, nn.Conv2d) else tuple(range(x.dim() - 1))
            total = x.sum(dims)
            previous = getattr(module, "_importance", None)
            module._importance = total if previous is None else previous + total

        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        handles = [m.register_forward_hook(hook) for m in layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _load(path: Path, batch_size: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    with np.load(path) as npz:
        x = torch.from_numpy(np.ascontiguousarray(npz["x"], dtype=np.float32))
        y = torch.from_numpy(npz["y"].astype(np.int64))
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)], y


def _pruner_settings(model: nn.Module) -> dict[str, Any]:
    """What Torch-Pruning must be told: the classifier keeps its outputs, the attention its
    head layout, and a free parameter (the position embedding) which dim is channels."""
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]
    ignored: list[nn.Module] = [classifier]
    unwrapped = []
    if isinstance(model, TinyTransformer):
        for attention in (m for m in model.modules() if isinstance(m, Attention)):
            ignored += [attention.q, attention.k, attention.v]
        unwrapped.append((model.position, 2))
    return {"ignored_layers": ignored, "unwrapped_parameters": unwrapped}


def accuracy(model: nn.Module, inputs: list[torch.Tensor], labels: torch.Tensor) -> float:
    with torch.inference_mode():
        predicted = torch.cat([model(x).argmax(1) for x in inputs])
    return float((predicted == labels).float().mean())


def run(args: argparse.Namespace) -> list[str]:
    model = SPECS[args.model].build().eval()
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    calibration, _ = _load(args.data, args.batch_size)
    evaluation, labels = _load(args.eval_data or args.data, args.batch_size)
    importance = AccumulatedActivation()
    with importance.compute_importance(model), torch.no_grad():
        for x in calibration:
            model(x)
    example = calibration[0][:2]
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    base = sum(p.numel() for p in model.parameters())
    rows = [f"-  baseline  {accuracy(model, evaluation, labels):.4f}  {base:,}"]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, fraction in enumerate(args.fractions):
        pruned = copy.deepcopy(model)  # the statistics (`_importance`) travel with the copy
        pruner = tp.pruner.MetaPruner(
            pruned,
            example,
            importance=importance,
            pruning_ratio=fraction,
            global_pruning=True,
            **_pruner_settings(pruned),
        )
        pruner.step()
        pruned.eval()
        program = torch.export.export(pruned, (example,), dynamic_shapes=dynamic)
        torch.export.save(program, args.out / f"pruned-{i}.pt2")
        params = sum(p.numel() for p in pruned.parameters())
        rows.append(f"{i}  f{fraction}  {accuracy(pruned, evaluation, labels):.4f}  {params:,}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", choices=sorted(SPECS), help="the model's code (bench.common)")
    parser.add_argument("weights", type=Path, help="its state dict (torch.save)")
    parser.add_argument("data", type=Path, help="calibration data (.npz: x, y)")
    parser.add_argument("--eval-data", type=Path, help="evaluation data (default: data)")
    parser.add_argument("--fractions", type=lambda s: [float(f) for f in s.split(",")])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("tp-out"))
    args = parser.parse_args(argv)
    print("\n".join(run(args)))


if __name__ == "__main__":
    main()
