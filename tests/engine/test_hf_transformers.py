"""Hugging Face's own GPT-2 and Llama, as people export them, cut by heads.

Small configurations with random weights (built from a config: nothing is downloaded),
called with `use_cache=False` (the key/value cache's `cat` of past and new keys would
freeze the heads), exported with a dynamic batch, read back through the safe reader and
analysed as an upload is. GPT-2 has `Conv1D` layers (weights stored (in, out), applied as
`addmm(b, x, W)`), a fused c_attn split into q, k and v, explicit or SDPA attention, and a
learned position embedding; Llama has RMSNorm, rotary tables computed with `cos`/`sin` at
run time, grouped-query attention (8 query heads on 2 key/value heads) and SwiGLU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pruning.data import Feeder
from pruning.graph import GraphAnalysis, analyse
from pruning.reader import read_program
from pruning.surgery import apply_plan
from tests.engine.graph_helpers import Zeroing, consumer_masks
from tests.zoo.programs import roundtrip

transformers = pytest.importorskip("transformers")

VOCAB, TOKENS, WIDTH = 50, 8, 32


class Classifier(nn.Module):
    """A language model's last hidden states, averaged, into 5 logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Linear(WIDTH, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=ids, use_cache=False).last_hidden_state
        return self.head(hidden.mean(1))


def _gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        n_layer=2, n_embd=WIDTH, n_head=4, n_positions=16, vocab_size=VOCAB
    )
    config._attn_implementation = "eager"  # softmax(q k^T) v written out
    return transformers.GPT2Model(config)


def _llama() -> nn.Module:
    config = transformers.LlamaConfig(
        num_hidden_layers=2,
        hidden_size=WIDTH,
        intermediate_size=64,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=16,
    )
    config._attn_implementation = "sdpa"
    return transformers.LlamaModel(config)


MODELS: dict[str, Callable[[], nn.Module]] = {"gpt2": _gpt2, "llama": _llama}
# Per model: the head group of layer 0 and what it describes, the MLP group, the stream.
EXPECTED = {
    "gpt2": ("model.h.0.attn.c_attn", {"heads": 4, "head_dim": 8}, "model.h.0.mlp.c_fc"),
    "llama": (
        "model.layers.0.self_attn.q_proj",
        {"heads": 2, "head_dim": 4, "query_heads": 8},
        "model.layers.0.mlp.gate_proj",
    ),
}

Loaded = tuple[str, nn.Module, torch.fx.GraphModule, GraphAnalysis, Feeder]


@pytest.fixture(scope="module", params=sorted(MODELS))
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    torch.manual_seed(0)
    model = Classifier(MODELS[request.param]()).eval()
    ids = torch.randint(0, VOCAB, (2, TOKENS))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (ids,), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp(request.param) / "model.pt2"
    torch.export.save(program, path)
    gm = read_program(path).module()
    analysis = analyse(gm)
    return request.param, model, gm, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16)


def test_heads_mlp_and_the_residual_stream_are_groups(loaded: Loaded) -> None:
    name, _, _, analysis, _ = loaded
    heads, described, mlp = EXPECTED[name]
    group = analysis.group(heads).describe()
    assert group["kind"] == "head" and "reason" not in group, group
    assert {k: group.get(k) for k in described} == described
    assert analysis.group(mlp).prunable
    embedding = {"gpt2": "model.wte", "llama": "model.embed_tokens"}[name]
    stream = next(g for g in analysis.groups if embedding in g.members)
    assert stream.prunable, stream.frozen_reason
    frozen = [g.name for g in analysis.frozen]
    assert frozen == ["head"], [g.describe() for g in analysis.frozen]  # only the logits


def test_keep_all_is_exact_and_a_cut_equals_zeroed_heads_and_channels(
    loaded: Loaded, tmp_path: Path
) -> None:
    _, model, gm, analysis, feeder = loaded
    ids = torch.randint(0, VOCAB, (5, TOKENS))
    keep_all = apply_plan(gm, analysis, {g.name: list(range(g.width)) for g in analysis.prunable})
    rng = np.random.default_rng(1)
    # Heads and MLP channels; the residual stream passes LayerNorm/RMSNorm, which
    # renormalises what is left, so zeroing is not its reference.
    plan = {
        g.name: sorted(rng.choice(g.width, size=max(1, g.width // 2), replace=False).tolist())
        for g in analysis.prunable
        if g.kind == "head" or g.name.endswith(("c_fc", "gate_proj"))
    }
    assert len(plan) == 4
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, plan), feeder)
    with torch.no_grad():
        torch.testing.assert_close(keep_all(ids), model(ids), rtol=1e-5, atol=1e-6)
        zeroed = Zeroing(gm, consumer_masks(analysis, plan)).run(ids)
        assert not torch.allclose(zeroed, model(ids), atol=1e-3)
        torch.testing.assert_close(pruned(ids), zeroed, rtol=1e-5, atol=1e-6)
    before = sum(p.numel() for p in gm.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < before


def test_with_the_key_value_cache_the_heads_freeze_with_a_reason() -> None:
    class Cached(Classifier):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.model(input_ids=ids).last_hidden_state.mean(1))

    torch.manual_seed(0)
    model = Cached(_gpt2()).eval()
    program = torch.export.export(model, (torch.randint(0, VOCAB, (2, TOKENS)),))
    reason = analyse(program.module()).group("model.h.0.attn.c_attn").frozen_reason or ""
    assert "concatenates these channels with a tensor that is not cut alongside" in reason
