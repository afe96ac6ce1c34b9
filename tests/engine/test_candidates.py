"""The notes a run adds on degenerate candidates: a layer left with one neuron, a single class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jobs.job_config import Compensation, Criterion
from pruning.config import PruneConfig, Threshold
from pruning.sweep import run
from tests.engine.blob_classifier import Trained, data, train_blob_classifier
from tests.tiny_models import export_to


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_blob_classifier(tmp_path_factory.mktemp("m"))


def test_a_layer_left_with_one_neuron_is_named_in_the_notes(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, x, y = trained
    config = PruneConfig(
        criterion=Criterion.VARIANCE, thresholds=(Threshold(std=1e9),), measure_latency=False
    )
    results = run(path, data(x, y), None, config, tmp_path)
    assert results.candidates[0].kept == {"fc1": 1, "fc2": 1}
    assert any("candidate 0 leaves fc1, fc2 with a single neuron" in n for n in results.notes)


class ConstantFallback(nn.Module):
    """fc2's neuron 0 is a constant 5 that votes for class 0; neurons 1-3 carry the signal."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(2, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]) * 0.2)
            self.fc1.bias.zero_()
            self.fc2.weight.copy_(torch.eye(4))
            self.fc2.weight[0] = 0.0
            self.fc2.bias.copy_(torch.tensor([5.0, 0, 0, 0]))
            self.out.weight.copy_(torch.tensor([[0.1, 0, 0, 0], [0, 50, 0, 0], [0, 0, 50, 50]]))
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_a_candidate_that_predicts_one_class_is_named_in_the_notes(tmp_path: Path) -> None:
    path = export_to(ConstantFallback().eval(), tmp_path / "c.pt2", d_in=2)
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    # seed drops neurons whose |mean| and std are both below the threshold: every signal
    # neuron (mean < 0.2) goes, fc2's constant 5 stays, and only class 0 is left.
    config = PruneConfig(
        criterion=Criterion.SEED,
        thresholds=(Threshold(mean=1.0, std=1e9),),
        compensate=Compensation.NONE,
        measure_latency=False,  # timed in test_sweep.py and test_latency.py, not here
    )
    results = run(path, data(x, None), None, config, tmp_path)
    assert results.candidates[0].kept["fc2"] == 1
    assert "candidate 0 predicts a single class for every sample" in results.notes
