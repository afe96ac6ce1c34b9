"""Recovery after the cut: a short fine-tune that distils the original model into the pruned
one (after `pruning.batchnorm` re-estimated its BatchNorm statistics).

Both run on the calibration (training) data, streamed batch by batch through a seeded
shuffle buffer, on the job's device; the same seed gives the same weights. The loss is
knowledge distillation from the original's outputs (KL divergence of the softened class
distributions for classifiers, MSE for regression outputs), plus cross-entropy (or MSE to
the targets) when the data has labels. The optimiser is Adam with a cosine decay of the
learning rate to zero over the planned steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx
from torch.nn import functional as F

from jobs.job_config import Metric
from pruning.config import Recovery
from pruning.data import Batch, BatchSource, Feeder
from pruning.errors import InvalidConfig
from pruning.evaluate import check_class_labels, first_output

TEMPERATURE = 2.0  # softens both distributions so the original's second choices teach too
SHUFFLE_ROWS = 8192  # rows of the shuffle buffer at most (a memory bound, not the dataset size)
# ... and bytes at most: 8,192 rows of a 64x64 image are 400 MB, which would make a job's
# memory grow with its data up to that size.
SHUFFLE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RecoveryReport:
    epochs: float  # epochs completed (fractional when time ran out)
    steps: int
    seconds: float
    stopped_early: bool  # max_seconds reached, or diverged
    final_loss: float | None
    diverged: bool = False  # a non-finite loss: the weights are those before recovery


class Shuffled:
    """A `BatchSource` whose rows come in a seeded random order within a bounded buffer
    (`SHUFFLE_ROWS` rows and `SHUFFLE_BYTES` at most, one batch at least), filled in place."""

    def __init__(
        self,
        source: BatchSource,
        seed: int,
        buffer_rows: int = SHUFFLE_ROWS,
        buffer_bytes: int = SHUFFLE_BYTES,
    ):
        self.source, self.seed = source, seed
        self.buffer_rows, self.buffer_bytes = buffer_rows, buffer_bytes

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        rng = np.random.default_rng(self.seed)
        bx: np.ndarray | None = None
        by: np.ndarray | None = None
        filled = 0
        for x, y in self.source.batches(batch_size):
            if bx is None:  # sized by the first batch: rows of one dataset are alike
                row_bytes = max(1, x[0].nbytes + (0 if y is None else np.asarray(y)[0].nbytes))
                rows = max(batch_size, min(self.buffer_rows, self.buffer_bytes // row_bytes))
                bx = np.empty((rows, *x.shape[1:]), dtype=x.dtype)
                by = None if y is None else np.empty((rows, *np.shape(y)[1:]), np.asarray(y).dtype)
            done = 0
            while done < len(x):
                n = min(len(x) - done, len(bx) - filled)
                bx[filled : filled + n] = x[done : done + n]
                if by is not None and y is not None:
                    by[filled : filled + n] = np.asarray(y)[done : done + n]
                filled, done = filled + n, done + n
                if filled == len(bx):
                    yield from self._emit(bx, by, filled, rng, batch_size)
                    filled = 0
        if bx is not None and filled:
            yield from self._emit(bx, by, filled, rng, batch_size)

    @staticmethod
    def _emit(
        bx: np.ndarray,
        by: np.ndarray | None,
        filled: int,
        rng: np.random.Generator,
        batch_size: int,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The buffer's first `filled` rows in a random order; each batch is a copy (fancy
        indexing), so the buffer may be refilled once they have all been handed out."""
        order = rng.permutation(filled)
        for start in range(0, filled, batch_size):
            idx = order[start : start + batch_size]
            yield bx[idx], None if by is None else by[idx]


def distil(
    student: fx.GraphModule,
    teacher: fx.GraphModule,
    train: BatchSource,
    samples: int,
    feeder: Feeder,
    recovery: Recovery,
    metric: Metric,
    *,
    seed: int,
    on_step: Callable[[float], None] | None = None,
) -> RecoveryReport:
    """Fine-tune `student` in place towards `teacher` (and the labels, when there are some).

    Args:
        student: the pruned module, on the feeder's device; its parameters are trained.
        teacher: the original module (not changed).
        train: the training data; `samples` rows.
        recovery: epochs, learning rate, time limit.
        metric: `mse` trains a regression (MSE), anything else a classifier (KL + CE).
        seed: initialises the shuffle; the same seed gives the same weights.
        on_step: called with the fraction of planned steps done (progress, cancellation).
    """
    torch.manual_seed(seed)
    feeder = Feeder([feeder.spec], feeder.device, recovery.batch_size)
    params = [p for p in student.parameters() if p.is_floating_point()]
    _refuse_low_precision(params)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    steps_per_epoch = max(1, -(-samples // feeder.batch_size))
    planned = max(1, recovery.epochs * steps_per_epoch)
    optimiser = torch.optim.Adam(params, lr=recovery.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=planned)
    started = time.monotonic()
    step, loss_value, stopped, diverged = 0, None, False, False
    for epoch in range(recovery.epochs):
        for batch in feeder(Shuffled(train, seed * 1000 + epoch)):
            if (
                recovery.max_seconds is not None
                and time.monotonic() - started > recovery.max_seconds
            ):
                stopped = True
                break
            loss = _loss(student, teacher, batch, metric)
            if not torch.isfinite(loss):  # diverged: give back the weights it started from
                with torch.no_grad():
                    for p, old in zip(params, before, strict=True):
                        p.copy_(old)
                diverged = stopped = True
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            step += 1
            loss_value = float(loss.detach())
            if on_step is not None:
                on_step(min(step / planned, 1.0))
        if stopped:
            break
    for p in params:
        p.requires_grad_(False)
    return RecoveryReport(
        epochs=step / steps_per_epoch,
        steps=step,
        seconds=time.monotonic() - started,
        stopped_early=stopped,
        final_loss=loss_value,
        diverged=diverged,
    )


def _refuse_low_precision(params: Sequence[torch.Tensor]) -> None:
    low = sorted({str(p.dtype).removeprefix("torch.") for p in params} - {"float32", "float64"})
    if low:
        # Adam's steps underflow and overflow in half precision (its eps is 0 in float16).
        raise InvalidConfig(
            f"recovery fine-tunes float32 models; this one has {', '.join(low)} parameters: "
            "export it in float32, or omit recovery"
        )


def _loss(
    student: fx.GraphModule, teacher: fx.GraphModule, batch: Batch, metric: Metric
) -> torch.Tensor:
    inputs = batch.inputs
    with torch.no_grad():
        target = first_output(teacher(*inputs))[: batch.valid].float()
    out = first_output(student(*inputs))[: batch.valid].float()
    if metric is not Metric.MSE:  # class scores on the last dim; any other dims are samples
        out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1, target.shape[-1])
    if metric is Metric.MSE:
        loss = F.mse_loss(out, target)
        if batch.y is not None and batch.y.numel() == out.numel():
            loss = loss + F.mse_loss(out, batch.y.to(out.device, out.dtype).reshape(out.shape))
        return loss
    t = TEMPERATURE
    loss = F.kl_div(
        F.log_softmax(out / t, dim=-1),
        F.log_softmax(target / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if batch.y is not None and metric is Metric.ACCURACY:
        labels = batch.y.reshape(-1)
        check_class_labels(labels, out.shape[-1])  # training data may differ from evaluation's
        loss = loss + F.cross_entropy(out, labels.to(out.device, torch.long))
    return loss
