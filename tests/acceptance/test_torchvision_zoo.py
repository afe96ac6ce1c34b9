"""`deadweight prune` on real torchvision classifiers, as users export them.

A subset of `make zoo` (bench/zoo.py, every family of issue 3) that runs in the suite: a few
families whose patterns the miniatures of tests/zoo/ only imitate (MobileNet's depthwise
convs and SE blocks are covered by the miniatures and by regnet_y's SE). `make
install` puts torchvision (its pure-Python model code) in .venv/torchvision.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.zoo import MIN_REDUCTION, check

SUITE_MODELS = [
    "resnet18",  # residual stages with projection shortcuts
    "squeezenet1_1",  # fire modules: concatenated expand branches
    "regnet_y_400mf",  # grouped convolutions with SE between them
    "shufflenet_v2_x0_5",  # channel split and shuffle (divided groups, gathers)
]


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_prune_cuts_a_torchvision_classifier(tmp_path: Path, name: str) -> None:
    # What is cut, not how fast it runs: `make zoo` times the candidates, the suite does not.
    outcome = check(name, tmp_path, size=32, samples=32, export_batch=16, latency=False)
    assert outcome.ok, outcome.error
    assert outcome.reduction >= MIN_REDUCTION
    assert outcome.prunable > 0
    if name == "shufflenet_v2_x0_5":  # every shuffled branch is cut; only the logits stay
        assert outcome.frozen == 1
