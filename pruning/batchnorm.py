"""BatchNorm statistics re-estimated after a cut, the first step of recovery.

A cut changes what every later BatchNorm sees, so its running mean and variance no longer
match. They are replaced by the exact statistics of the layer's inputs over the training
data, each BatchNorm seeing the earlier ones normalise by batch statistics, as in training.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import fx

from pruning.data import Batch
from pruning.graph import get_tensor
from pruning.stats import RunningStats
from pruning.surgery import set_tensor

# The forms an exported eval-mode batch norm takes (before and after decompositions): the
# nodes whose running statistics re-estimation replaces.
_EVAL_BATCH_NORMS = {
    torch.ops.aten.batch_norm.default,
    torch.ops.aten._native_batch_norm_legit_no_training.default,
}


class _BatchStatistics(fx.Interpreter):
    """Runs a module with every BatchNorm normalising by the batch's own statistics (train
    mode) while accumulating, per BatchNorm, the exact statistics of its inputs."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=True)
        self.stats: dict[fx.Node, RunningStats] = {}
        self.valid = 0  # rows of the current batch that are data (the rest pad a static batch)

    def run_node(self, n: fx.Node) -> object:
        if n.op != "call_function" or n.target not in _EVAL_BATCH_NORMS:
            return super().run_node(n)
        args, _ = self.fetch_args_kwargs_from_env(n)
        x, weight, bias = args[0], args[1], args[2]
        eps = float(args[-1] if n.target is not torch.ops.aten.batch_norm.default else args[7])
        assert isinstance(x, torch.Tensor)
        if n not in self.stats:
            self.stats[n] = RunningStats(channels=int(x.shape[1]), channel_dim=1)
        data = x[: self.valid]  # (B, C, ...): padding rows are not data
        self.stats[n].update(data)
        dims = [0, *range(2, x.dim())]
        mean = data.mean(dim=dims, keepdim=True)
        var = data.var(dim=dims, keepdim=True, unbiased=False)
        shape = [1, -1] + [1] * (x.dim() - 2)
        out = (x - mean) / torch.sqrt(var + eps)
        if weight is not None:
            out = out * weight.reshape(shape)
        if bias is not None:
            out = out + bias.reshape(shape)
        if n.target is torch.ops.aten.batch_norm.default:
            return out
        empty = x.new_empty(0)
        return (out, empty, empty)


def reestimate_batchnorm(gm: fx.GraphModule, batches: Iterator[Batch]) -> int:
    """Replace every BatchNorm's running mean and variance by those of its inputs over the
    data, each layer seeing the earlier ones normalised by batch statistics (as in training).

    Returns:
        The number of BatchNorm layers re-estimated.
    """
    interp = _BatchStatistics(gm)
    with torch.no_grad():
        for batch in batches:
            if batch.valid > 1:  # one sample has no variance to measure
                # The whole (padded) batch runs: a model exported with a fixed batch size
                # accepts no other; only its valid rows are measured and normalise.
                interp.valid = batch.valid
                interp.run(*batch.inputs)
    written = 0
    for node, stats in interp.stats.items():
        mean_node, var_node = node.args[3], node.args[4]
        tracked = all(isinstance(n, fx.Node) and n.op == "get_attr" for n in (mean_node, var_node))
        if stats.count < 2 or not tracked:  # no running statistics to replace
            continue
        mean_path, var_path = str(mean_node.target), str(var_node.target)  # type: ignore[union-attr]
        old = get_tensor(gm, mean_path)
        set_tensor(gm, mean_path, stats.mean.to(old.device, old.dtype))
        set_tensor(gm, var_path, (stats.std**2).to(old.device, old.dtype))
        written += 1
    return written


def has_batchnorm(gm: fx.GraphModule) -> bool:
    """Whether the module normalises with running statistics anywhere."""
    return any(n.op == "call_function" and n.target in _EVAL_BATCH_NORMS for n in gm.graph.nodes)
