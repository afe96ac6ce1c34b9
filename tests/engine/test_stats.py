"""Statistics equal torch.mean / torch.std over all activations, whatever the batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pruning.data import ArrayData, Feeder
from pruning.graph import analyse
from pruning.reader import read_program
from pruning.stats import RunningStats, collect
from tests.tiny_models import MLP, export_to, randomize_bn


@pytest.mark.parametrize("batch", [1, 7, 32, 1000])
def test_running_stats_match_torch_over_all_batches(batch: int) -> None:
    g = torch.Generator().manual_seed(1)
    data = torch.randn(301, 5, generator=g, dtype=torch.float32) * 3 + 2
    data[:, 2] = 0.0  # a dead neuron: zero variance, all zeros
    s = RunningStats(channels=5)
    for start in range(0, len(data), batch):
        s.update(data[start : start + batch])
    d = data.double()
    assert s.count == 301
    torch.testing.assert_close(s.mean, d.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(s.std, d.std(0), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s.abs_sum / s.count, d.abs().mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.zeros / s.count, (d == 0).double().mean(0))
    torch.testing.assert_close(s.min, d.min(0).values)
    torch.testing.assert_close(s.max, d.max(0).values)
    assert s.std[2] == 0 and s.zeros[2] == 301


def test_running_stats_over_sequence_dims() -> None:
    data = torch.randn(10, 7, 3)  # (N, T, C): statistics over N and T
    s = RunningStats(channels=3)
    s.update(data[:4])
    s.update(data[4:])
    flat = data.reshape(-1, 3).double()
    torch.testing.assert_close(s.mean, flat.mean(0))
    torch.testing.assert_close(s.std, flat.std(0))


@pytest.mark.parametrize("batch", [1, 13, 64, 500])
def test_collected_activations_equal_direct_computation(tmp_path: Path, batch: int) -> None:
    torch.manual_seed(0)
    model = randomize_bn(MLP()).eval()
    path = export_to(model, tmp_path / "m.pt2")
    gm = read_program(path).module()
    analysis = analyse(gm)
    x = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), batch)
    taps = {g.taps[0]: g.width for g in analysis.prunable}
    stats = collect(gm, taps, feeder(ArrayData(x)))

    with torch.no_grad():
        xt = torch.from_numpy(x)
        seen_by_fc2 = model.act1(model.bn(model.fc1(xt))).double()  # dropout is identity in eval
        seen_by_out = model.act2(model.fc2(seen_by_fc2.float())).double()
    fc1, fc2 = analysis.group("fc1"), analysis.group("fc2")
    for group, expected in ((fc1, seen_by_fc2), (fc2, seen_by_out)):
        s = stats[group.taps[0]]
        assert s.count == 200
        torch.testing.assert_close(s.mean, expected.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s.std, expected.std(0), rtol=1e-5, atol=1e-6)


def test_static_batch_padding_is_not_counted(tmp_path: Path) -> None:
    model = MLP().eval()
    path = export_to(model, tmp_path / "static.pt2", dynamic=False)  # batch fixed at 4
    gm = read_program(path).module()
    analysis = analyse(gm)
    feeder = Feeder(analysis.inputs, torch.device("cpu"), 256)
    assert feeder.static_batch == 4
    x = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)  # 4 + 4 + 2 (padded)
    stats = collect(gm, {analysis.group("fc1").taps[0]: 12}, feeder(ArrayData(x)))
    s = stats[analysis.group("fc1").taps[0]]
    with torch.no_grad():
        expected = model.act1(model.bn(model.fc1(torch.from_numpy(x)))).double()
    assert s.count == 10
    torch.testing.assert_close(s.mean, expected.mean(0), rtol=1e-5, atol=1e-6)
