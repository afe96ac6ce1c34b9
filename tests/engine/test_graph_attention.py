"""Attention heads as units: found in each way attention is written, cut whole, and equal
to the original with those heads' outputs zeroed where the output projection reads them.

The zoo (tests/zoo/attention.py, through test_zoo.py and test_graph_zoo.py) covers GPT's
split c_attn with explicit causal attention, Llama's rotary GQA, nn.MultiheadAttention,
Swin's window attention and ViT's fused qkv. Here: the forms it does not, grouped-query
attention inside the op, token embeddings (tied and not), and what still freezes, and why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jobs.job_config import Compensation
from pruning.data import ArrayData, Feeder
from pruning.graph import GraphAnalysis, analyse
from pruning.reader import read_program
from pruning.stats import collect
from pruning.surgery import apply_plan
from tests.engine.graph_helpers import Zeroing, consumer_masks
from tests.tiny_models import export_to
from tests.zoo.programs import roundtrip

TOKENS, DIM = 5, 16


class Attention(nn.Module):
    """q, k, v projections, heads by `view`, then attention in one of several forms."""

    def __init__(self, form: str, heads: int = 4, kv_heads: int = 4, head_dim: int = 4) -> None:
        super().__init__()
        self.form, self.heads, self.kv_heads, self.head_dim = form, heads, kv_heads, head_dim
        self.q = nn.Linear(DIM, heads * head_dim)
        self.k = nn.Linear(DIM, kv_heads * head_dim)
        self.v = nn.Linear(DIM, kv_heads * head_dim)
        self.o = nn.Linear(heads * head_dim, DIM)

    def _heads(self, layer: nn.Module, x: torch.Tensor, count: int) -> torch.Tensor:
        n, t, _ = x.shape
        return layer(x).view(n, t, count, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q = self._heads(self.q, x, self.heads)
        k, v = self._heads(self.k, x, self.kv_heads), self._heads(self.v, x, self.kv_heads)
        if self.form == "explicit":
            scores = (q @ k.transpose(-2, -1)) / self.head_dim**0.5
            y = scores.softmax(-1) @ v
        elif self.form == "heads_softmax":  # normalises across heads: they are not separable
            y = (q @ k.transpose(-2, -1)).softmax(1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.kv_heads != self.heads)
        return self.o(y.transpose(1, 2).reshape(n, t, self.heads * self.head_dim))


class CrossAttention(nn.Module):
    """Keys and values from the input itself, unprojected: their heads belong to no layer."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(DIM, DIM)
        self.o = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q = self.q(x).view(n, t, 4, 4).transpose(1, 2)
        kv = x.view(n, t, 4, 4).transpose(1, 2)
        return self.o(F.scaled_dot_product_attention(q, kv, kv).transpose(1, 2).reshape(n, t, DIM))


def _load(tmp_path: Path, model: nn.Module) -> tuple[GraphAnalysis, Feeder, torch.fx.GraphModule]:
    torch.manual_seed(0)
    gm = read_program(export_to(model.eval(), tmp_path / "m.pt2", d_in=(TOKENS, DIM))).module()
    analysis = analyse(gm)
    return analysis, Feeder(analysis.inputs, torch.device("cpu"), 16), gm


@pytest.mark.parametrize(
    ("form", "heads", "kv_heads", "units", "query_heads"),
    [("sdpa", 4, 4, 4, 4), ("explicit", 4, 4, 4, 4), ("sdpa", 8, 2, 2, 8)],
    ids=["sdpa", "explicit", "gqa_in_the_op"],
)
def test_heads_are_cut_whole_and_equal_zeroed_head_outputs(
    tmp_path: Path, form: str, heads: int, kv_heads: int, units: int, query_heads: int
) -> None:
    torch.manual_seed(1)
    model = Attention(form, heads, kv_heads)
    analysis, feeder, gm = _load(tmp_path, model)
    group = analysis.group("q")
    described = group.describe()
    assert described["kind"] == "head" and described["heads"] == units
    assert described.get("query_heads", units) == query_heads and described["head_dim"] == 4
    assert described["coupled"] == ["q", "k", "v"]
    x = torch.randn(6, TOKENS, DIM)
    keep_all = roundtrip(tmp_path, apply_plan(gm, analysis, {"q": list(range(units))}), feeder)
    torch.testing.assert_close(keep_all(x), model(x), rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(units)
    kept = sorted(rng.choice(units, size=units // 2, replace=False).tolist())
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, {"q": kept}), feeder)
    with torch.no_grad():
        expected = Zeroing(gm, consumer_masks(analysis, {"q": kept})).run(x)
        torch.testing.assert_close(pruned(x), expected, rtol=1e-5, atol=1e-6)
    # Whole heads went: a unit is a key/value head with the query heads that share it.
    per_unit = query_heads // units
    assert pruned.get_parameter("q.weight").shape == (len(kept) * per_unit * 4, DIM)
    assert pruned.get_parameter("k.weight").shape == (len(kept) * 4, DIM)
    assert pruned.get_parameter("o.weight").shape == (DIM, len(kept) * per_unit * 4)


def test_a_softmax_across_heads_freezes_them(tmp_path: Path) -> None:
    analysis, _, _ = _load(tmp_path, Attention("heads_softmax"))
    assert "a softmax over these channels mixes them" in (analysis.group("q").frozen_reason or "")


def test_keys_and_values_no_layer_makes_freeze_the_queries(tmp_path: Path) -> None:
    analysis, _, _ = _load(tmp_path, CrossAttention())
    reason = analysis.group("q").frozen_reason or ""
    assert "not whole heads of q, k and v" in reason


class TokenModel(nn.Module):
    """Token ids -> embedding -> an MLP with a residual -> logits, the head tied or not."""

    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.up = nn.Linear(8, 12)
        self.down = nn.Linear(12, 8)
        self.lm_head = nn.Linear(8, 11, bias=False)
        if tied:
            self.lm_head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        return self.lm_head(h + self.down(F.relu(self.up(h))))


def _tokens(
    tmp_path: Path, tied: bool
) -> tuple[nn.Module, GraphAnalysis, Feeder, torch.fx.GraphModule]:
    torch.manual_seed(0)
    model = TokenModel(tied).eval()
    ids = torch.randint(0, 11, (4, TOKENS))
    program = torch.export.export(model, (ids,), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, tmp_path / "tokens.pt2")
    gm = read_program(tmp_path / "tokens.pt2").module()
    analysis = analyse(gm)
    return model, analysis, Feeder(analysis.inputs, torch.device("cpu"), 16), gm


def test_a_token_embedding_makes_the_residual_stream_a_group(tmp_path: Path) -> None:
    _, analysis, feeder, gm = _tokens(tmp_path, tied=False)
    stream = analysis.group("embed")
    assert stream.prunable and stream.kind == "coupled" and stream.members == ["embed", "down"]
    kept = [0, 2, 3, 6]
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, {"embed": kept}), feeder)
    assert pruned.get_parameter("embed.weight").shape == (11, 4)
    ids = torch.randint(0, 11, (3, TOKENS))
    with torch.no_grad():
        expected = Zeroing(gm, consumer_masks(analysis, {"embed": kept})).run(ids)
        torch.testing.assert_close(pruned(ids), expected, rtol=1e-5, atol=1e-6)


def test_a_head_tied_to_the_embedding_freezes_the_stream(tmp_path: Path) -> None:
    _, analysis, _, _ = _tokens(tmp_path, tied=True)
    # Export keeps one name for the shared table (lm_head.weight); the stream is its columns.
    stream = next(g for g in analysis.groups if "down" in g.members)
    assert "tied to the embedding" in (stream.frozen_reason or "")
    assert len({g.name for g in analysis.groups}) == len(analysis.groups)


class KdimAttention(nn.Module):
    """nn.MultiheadAttention with kdim/vdim: three projection weights, one in_proj_bias that
    the export chunks into the three biases."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(DIM, 16), nn.Linear(DIM, 8), nn.Linear(DIM, 12)
        self.mha = nn.MultiheadAttention(16, 4, kdim=8, vdim=12, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mha(self.q(x), self.k(x), self.v(x), need_weights=False)[0])


def test_projections_whose_biases_are_parts_of_one_vector_are_cut_by_heads(
    tmp_path: Path,
) -> None:
    model = KdimAttention()
    analysis, feeder, gm = _load(tmp_path, model)
    (group,) = [g for g in analysis.prunable if g.kind == "head"]
    assert group.width == 4 and len(group.members) == 3
    x = torch.randn(6, TOKENS, DIM)
    kept = [0, 3]
    pruned = roundtrip(tmp_path, apply_plan(gm, analysis, {group.name: kept}), feeder)
    assert pruned.get_parameter("mha.in_proj_bias").shape == (3 * 2 * 4,)
    assert pruned.get_parameter("mha.k_proj_weight").shape == (2 * 4, 8)
    with torch.no_grad():
        expected = Zeroing(gm, consumer_masks(analysis, {group.name: kept})).run(x)
        torch.testing.assert_close(pruned(x), expected, rtol=1e-5, atol=1e-6)
    # Constant channels of k, cut with mean compensation, leave the outputs as they were: what
    # they gave goes into a bias added after mha's k projection (its own is in in_proj_bias).
    dead = [1, 4, 6]
    with torch.no_grad():
        model.k.weight[dead] = 0.0
        model.k.bias[dead] = torch.tensor([0.5, -1.0, 2.0])
    analysis, feeder, gm = _load(tmp_path, model)
    data = np.random.default_rng(0).normal(size=(64, TOKENS, DIM)).astype(np.float32)
    stats = collect(
        gm, {t: g.width for g in analysis.prunable for t in g.taps}, feeder(ArrayData(data))
    )
    keep = [j for j in range(8) if j not in dead]
    cut = apply_plan(gm, analysis, {"k": keep}, moments=stats, compensate=Compensation.MEAN)
    assert [n for n in cut.graph.nodes if n.meta.get("compensation_bias")]
    compensated = roundtrip(tmp_path, cut, feeder)
    assert compensated.get_parameter("mha.k_proj_weight").shape == (16, 5)
    with torch.no_grad():
        torch.testing.assert_close(compensated(x), model(x), rtol=1e-5, atol=1e-5)
