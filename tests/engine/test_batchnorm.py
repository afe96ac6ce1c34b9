"""BatchNorm statistics re-estimated after a cut: exact over the data, padding rows excluded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruning.batchnorm import reestimate_batchnorm
from pruning.data import ArrayData, Feeder
from pruning.graph import analyse
from pruning.reader import read_program
from tests.tiny_models import MLP, export_to, randomize_bn


def test_batchnorm_statistics_are_re_estimated_from_the_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomize_bn(MLP().eval())
    gm = read_program(export_to(model, tmp_path / "bn.pt2")).module()
    feeder = Feeder(analyse(gm).inputs, torch.device("cpu"), 32)
    x = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    assert reestimate_batchnorm(gm, feeder(ArrayData(x))) == 1
    with torch.no_grad():
        h = model.fc1(torch.from_numpy(x)).double()  # what the BatchNorm normalises
    torch.testing.assert_close(
        gm.get_buffer("bn.running_mean").double(), h.mean(0), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        gm.get_buffer("bn.running_var").double(), h.var(0), rtol=1e-5, atol=1e-6
    )


class ConvBN(nn.Module):
    """conv -> BatchNorm -> ReLU -> flatten (a fixed-size view when exported statically)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 4, 4)
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_batchnorm_re_estimation_of_a_fixed_batch_model_measures_only_the_data(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = randomize_bn(ConvBN().eval())
    path = export_to(model, tmp_path / "s.pt2", d_in=(1, 4, 4), dynamic=False)  # batch 4
    gm = read_program(path).module()
    feeder = Feeder(analyse(gm).inputs, torch.device("cpu"), 64)
    x = np.random.default_rng(0).normal(size=(10, 1, 4, 4)).astype(np.float32)  # 4 + 4 + 2
    assert reestimate_batchnorm(gm, feeder(ArrayData(x))) == 1
    with torch.no_grad():
        h = model.conv(torch.from_numpy(x)).double()  # (10, 6, 4, 4), padding rows excluded
    direct = h.movedim(1, -1).reshape(-1, 6)
    torch.testing.assert_close(
        gm.get_buffer("bn.running_mean").double(), direct.mean(0), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        gm.get_buffer("bn.running_var").double(), direct.var(0), rtol=1e-5, atol=1e-6
    )
