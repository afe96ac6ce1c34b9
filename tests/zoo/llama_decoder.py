"""A small Llama-style decoder and a synthetic sequence task it learns in seconds on a CPU.

The model is Llama's architecture in miniature: an untied token embedding, pre-norm blocks
with `nn.RMSNorm`, attention with separate bias-less q/k/v/o projections, rotary position
embeddings (the `rotate_half` form, cos/sin as buffers), grouped-query attention (8 query
heads share 2 key/value heads, repeated with `expand` + `reshape` as Llama code does) through
`scaled_dot_product_attention(is_causal=True)`, a SwiGLU MLP, a final RMSNorm and an
untied head. Exported, it gives the engine all three kinds of groups a Llama has: heads,
SwiGLU channels and the residual stream.

The task needs attention: each sequence is a start token, a key of `KEY` distinct random
tokens, a delimiter, and the key again, in reverse. The next token is predictable only from
the delimiter on, and only by looking back at the right key position (a different distance
for every position). Distinct key tokens, the start token and a rope base of 100 are what
made training reliable in 250 steps (about 10 s on one thread): with repeated key tokens, no
start token or Llama's base of 10,000, one seed in three or four left one position unlearned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 32  # token 0 starts a sequence, 1 is the delimiter; keys are drawn from 2..VOCAB-1
KEY = 7
SEQ = 2 * KEY + 1  # the model reads tokens 0..SEQ-1 and predicts tokens 1..SEQ
HIDDEN, MLP, HEADS, KV_HEADS, HEAD_DIM = 64, 128, 8, 2, 8
BOS, DELIMITER = 0, 1
# Llama's rope_theta is 10,000 for thousands of positions; over 15 positions the slow
# frequencies of an 8-wide head barely turn.
ROPE_BASE = 100.0


class Attention(nn.Module):
    """Grouped-query attention with rotary embeddings, as in Llama."""

    cos: torch.Tensor  # (SEQ, HEAD_DIM) buffers: constants of the exported program
    sin: torch.Tensor

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        # (b, t, heads, head_dim) with -1 for the heads, as Llama's code writes it.
        q = self.q_proj(x).view(b, t, -1, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(x).view(b, t, -1, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(x).view(b, t, -1, HEAD_DIM).transpose(1, 2)
        cos, sin = self.cos[:t], self.sin[:t]
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k, v = _repeat_kv(k, HEADS // KV_HEADS), _repeat_kv(v, HEADS // KV_HEADS)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))  # type: ignore[no-any-return]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(x: torch.Tensor, times: int) -> torch.Tensor:
    """(B, kv, T, d) -> (B, kv * times, T, d), each kv head `times` in a row (Llama's)."""
    b, kv, t, d = x.shape
    return x[:, :, None].expand(b, kv, times, t, d).reshape(b, kv * times, t, d)


class Block(nn.Module):
    def __init__(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        super().__init__()
        self.input_norm = nn.RMSNorm(HIDDEN, eps=1e-5)
        self.attention = Attention(cos, sin)
        self.post_norm = nn.RMSNorm(HIDDEN, eps=1e-5)
        self.gate_proj = nn.Linear(HIDDEN, MLP, bias=False)
        self.up_proj = nn.Linear(HIDDEN, MLP, bias=False)
        self.down_proj = nn.Linear(MLP, HIDDEN, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.input_norm(x))
        h = self.post_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))  # type: ignore[no-any-return]


class LlamaDecoder(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, VOCAB)."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
        angles = torch.outer(torch.arange(SEQ).float(), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)  # (T, HEAD_DIM), rotate_half's layout
        cos, sin = angles.cos(), angles.sin()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(Block(cos, sin) for _ in range(layers))
        self.norm = nn.RMSNorm(HIDDEN, eps=1e-5)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Task:
    """Inputs (N, SEQ) int64 token ids and next-token targets (N, SEQ) int64."""

    x: np.ndarray
    y: np.ndarray

    def split(self, validation: int) -> tuple[Task, Task]:
        """(train, validation): the last `validation` sequences held out."""
        n = len(self.x) - validation
        return Task(self.x[:n], self.y[:n]), Task(self.x[n:], self.y[n:])


def reversal_task(samples: int, seed: int) -> Task:
    """`samples` sequences `BOS, key, DELIMITER, reversed(key)`: inputs, shifted targets."""
    rng = np.random.default_rng(seed)
    key = 2 + np.argsort(rng.random((samples, VOCAB - 2)), axis=1)[:, :KEY]  # distinct tokens
    bos, delimiter = np.full((samples, 1), BOS), np.full((samples, 1), DELIMITER)
    full = np.concatenate([bos, key, delimiter, key[:, ::-1]], axis=1)
    return Task(full[:, :-1].astype(np.int64), full[:, 1:].astype(np.int64))


# The positions whose next token the task determines: the delimiter (after the key) and
# the reversed key; the key's own tokens are random and no model predicts them.
ANSWER = slice(KEY, SEQ)


def sequence_loss(model: nn.Module, task: Task, answer_only: bool = True) -> float:
    """Mean next-token cross-entropy (nats) over the answer positions (or all of them)."""
    with torch.inference_mode():
        logits = model(torch.from_numpy(task.x))
        y = torch.from_numpy(task.y)
        if answer_only:
            logits, y = logits[:, ANSWER], y[:, ANSWER]
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)))


def train(task: Task, steps: int = 250, seed: int = 0, batch: int = 96) -> LlamaDecoder:
    """A decoder trained on `task` with AdamW (one cycle) on every position's next-token loss."""
    torch.manual_seed(seed)
    model = LlamaDecoder()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    x, y = torch.from_numpy(task.x), torch.from_numpy(task.y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        logits = model(x[idx])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y[idx].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        schedule.step()
    return model.eval()


def export_decoder(model: nn.Module, path: Path) -> Path:
    """Export with a dynamic batch dim (token ids, int64) and save, as a user uploads it."""
    example = (torch.zeros(4, SEQ, dtype=torch.long),)
    shapes = ({0: torch.export.Dim("batch", min=1)},)
    torch.export.save(torch.export.export(model.eval(), example, dynamic_shapes=shapes), path)
    return path
