"""Honest numbers: a job that fits anything to its data — recovery's fine-tuning, or linear
compensation's least-squares reconstruction — and has no evaluation data holds a seeded
part of the data out for evaluation, never fitted on; the results say which rows served
what."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from jobs.job_config import HOLDOUT_FRACTION, Compensation
from pruning.config import PruneConfig
from pruning.data import BatchSource, DataInput
from pruning.errors import InvalidConfig


@dataclass
class Subset:
    """The rows of a source whose position is marked in `mask` (a seeded hold-out split)."""

    source: BatchSource
    mask: np.ndarray  # (N,) bool over the source's rows, in order

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Full batches of the marked rows (the last one may be short): batches of one shape
        keep memory flat and fill a model's fixed batch."""
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        rows, start = 0, 0
        for x, y in self.source.batches(batch_size):
            keep = self.mask[start : start + len(x)]
            start += len(x)
            xs.append(x[keep])
            if y is not None:
                ys.append(np.asarray(y)[keep])
            rows += int(keep.sum())
            while rows >= batch_size:
                bx, by, xs, ys = _take(xs, ys, batch_size)
                rows -= batch_size
                yield bx, by
        if rows:
            bx, by, _, _ = _take(xs, ys, rows)
            yield bx, by


def _take(
    xs: list[np.ndarray], ys: list[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray], list[np.ndarray]]:
    """The first `n` buffered rows, and the buffers that remain."""
    x = np.concatenate(xs)
    y = np.concatenate(ys) if ys else None
    rest_y = [] if y is None else [y[n:]]
    return x[:n], None if y is None else y[:n], [x[n:]], rest_y


def holdout_mask(samples: int, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: round(fraction x N) rows (at least one, never all) chosen with `seed`."""
    count = min(max(1, round(fraction * samples)), samples - 1)
    mask = np.zeros(samples, dtype=bool)
    mask[np.random.default_rng(seed).permutation(samples)[:count]] = True
    return mask


def split(
    config: PruneConfig, calibration: DataInput, evaluation: DataInput | None
) -> tuple[DataInput, DataInput, dict[str, object]]:
    """The data for statistics and training, the data for evaluation, and what was used for
    what. Without evaluation data, a job that fits its candidates to the data holds a seeded
    part out: a model is never scored on the samples it was fitted or fine-tuned on."""
    use: dict[str, object]
    if evaluation is not None:
        use = {"statistics": "dataset", "evaluation": "eval_dataset"}
        if config.recovery is not None:
            use["training"] = "dataset"
        return calibration, evaluation, use
    fits = config.recovery is not None or config.compensate is Compensation.LINEAR
    if not fits:
        return calibration, calibration, {"statistics": "dataset", "evaluation": "dataset"}
    if calibration.samples < 2:
        raise InvalidConfig(
            "with linear compensation or recovery and no evaluation data, some samples are "
            "held out to evaluate: give at least 2 samples, or an evaluation dataset"
        )
    mask = holdout_mask(calibration.samples, HOLDOUT_FRACTION, config.seed)
    held = int(mask.sum())
    train = DataInput(
        Subset(calibration.source, ~mask), calibration.samples - held, calibration.has_labels
    )
    test = DataInput(Subset(calibration.source, mask), held, calibration.has_labels)
    use = {
        "statistics": "dataset, rows not held out",
        "evaluation": "dataset, held-out rows",
        "holdout": {
            "fraction": HOLDOUT_FRACTION,
            "seed": config.seed,
            "samples": held,
            "rule": "numpy.random.default_rng(seed).permutation(samples)[:held] are held out",
        },
    }
    if config.recovery is not None:
        use["training"] = "dataset, rows not held out"
    return train, test, use
