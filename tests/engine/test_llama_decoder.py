"""A small Llama-style decoder, trained here on a sequence task, pruned as a user would: by
attention heads and SwiGLU channels (and the residual stream), with linear compensation and
recovery, through the engine's entry point (`pruning.run`, what `deadweight prune` and the
worker call). It keeps its validation loss within a stated margin at a stated reduction.

What was measured (`python -m bench.llama_decoder`, README "A small Llama-style decoder"):
at `f0.4`, uniform allocation, one kv head of two and its four query heads are cut in each
layer (63.7 % fewer parameters). Training did not give the same model on every machine
(same code and seed; the cause was not looked into), and neither is what recovery needs:
this seed's decoder went from 0.060 to 0.055 nats on the answer positions with 2 epochs on
one machine, and on another trained to 0.0155 and needed more (2 epochs: 0.101, 4: 0.022,
8: 0.0155). The test gives 6 epochs on 3,000 sequences. Without recovery the loss is 2-5
nats. The engine's metric is per-token accuracy (it has no cross-entropy metric); the loss
is computed here, on the downloaded program.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs.job_config import Allocation, Compensation, Metric
from pruning import DataInput, PruneConfig, Recovery, Threshold, read_program, run
from pruning.graph import analyse
from tests.zoo.llama_decoder import (
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    MLP,
    SEQ,
    VOCAB,
    Task,
    export_decoder,
    reversal_task,
    sequence_loss,
    train,
)

LOSS_MARGIN = 0.05  # nats over the original's loss on the answer positions
MIN_REDUCTION = 0.60  # fewer parameters (uniform f0.4 gives 63.7 % whatever the data)
QUERY_PER_KV = HEADS // KV_HEADS
Decoder = tuple[Path, Task, Task]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Decoder:
    """The exported decoder (seed 0), its training and validation sequences."""
    training, validation = reversal_task(6000, seed=0).split(1000)
    model = train(training, seed=0)
    path = export_decoder(model, tmp_path_factory.mktemp("decoder") / "decoder.pt2")
    return path, training, validation


def test_the_engine_sees_heads_swiglu_channels_and_the_residual_stream(decoder: Decoder) -> None:
    path, _, _ = decoder
    groups = {g.name: g.describe() for g in analyse(read_program(path).module()).groups}
    for layer in ("layers.0", "layers.1"):
        attention = f"{layer}.attention"
        assert groups[f"{attention}.q_proj"] == {
            "name": f"{attention}.q_proj",
            "width": KV_HEADS,  # a unit is a kv head and the query heads that share it
            "kind": "head",
            "coupled": [f"{attention}.q_proj", f"{attention}.k_proj", f"{attention}.v_proj"],
            "heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "query_heads": HEADS,
        }
        swiglu = groups[f"{layer}.gate_proj"]
        assert swiglu["width"] == MLP and "reason" not in swiglu
        assert swiglu["coupled"] == [f"{layer}.gate_proj", f"{layer}.up_proj"]
    stream = groups["embed_tokens"]  # the residual stream, through every RMSNorm
    assert "reason" not in stream
    coupled = stream["coupled"]
    assert isinstance(coupled, list)
    writers = {f"layers.{i}.{p}" for i in (0, 1) for p in ("attention.o_proj", "down_proj")}
    assert writers <= set(coupled)
    assert "reason" in groups["lm_head"]  # the logits are the model's output


def test_pruned_by_heads_and_swiglu_channels_with_recovery_it_keeps_its_loss(
    decoder: Decoder, tmp_path: Path
) -> None:
    path, training, validation = decoder
    config = PruneConfig(
        thresholds=(Threshold(fraction=0.4),),
        allocation=Allocation.UNIFORM,  # `global` ranks both heads of a layer last (README)
        compensate=Compensation.LINEAR,
        recovery=Recovery(epochs=6, lr=5e-3),
        metric=Metric.ACCURACY,  # per token: logits (B, T, V) against targets (B, T)
        measure_latency=False,
    )
    calibration = DataInput.of(training.x[:3000], training.y[:3000])  # and recovery's
    results = run(path, calibration, DataInput.of(validation.x, validation.y), config, tmp_path)
    (candidate,) = results.candidates
    original = read_program(path)
    pruned = read_program(tmp_path / candidate.artifact)
    w = {name: t.shape for name, t in pruned.state_dict.items()}

    for layer in ("layers.0", "layers.1"):
        a = f"{layer}.attention"
        kv_heads = w[f"{a}.k_proj.weight"][0] // HEAD_DIM
        assert 1 <= kv_heads < KV_HEADS  # heads were cut, and whole ones
        assert w[f"{a}.k_proj.weight"][0] == w[f"{a}.v_proj.weight"][0] == kv_heads * HEAD_DIM
        query = kv_heads * QUERY_PER_KV * HEAD_DIM  # with all the query heads sharing them
        assert w[f"{a}.q_proj.weight"][0] == w[f"{a}.o_proj.weight"][1] == query
        hidden = w[f"{layer}.gate_proj.weight"][0]
        assert 1 <= hidden < MLP  # SwiGLU channels were cut, gate, up and down alike
        assert w[f"{layer}.up_proj.weight"][0] == w[f"{layer}.down_proj.weight"][1] == hidden

    module = pruned.module()
    assert module(torch.from_numpy(validation.x[:3])).shape == (3, SEQ, VOCAB)
    before, after = sequence_loss(original.module(), validation), sequence_loss(module, validation)
    assert after <= before + LOSS_MARGIN, (before, after)
    parameters = sum(p.numel() for p in pruned.parameters())
    assert candidate.parameters == parameters
    assert parameters <= (1 - MIN_REDUCTION) * results.baseline.parameters
    # The cut alone hurt (recovery did the work the margin shows), and recovery is reported.
    assert candidate.metric_before_recovery is not None
    assert candidate.metric_before_recovery < results.baseline.metric - 0.1
    assert candidate.recovery is not None and candidate.recovery["steps"] > 0
