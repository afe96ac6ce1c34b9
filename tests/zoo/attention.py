"""Attention blocks as people write them: heads must be found and cut whole in each.

- `GPTBlock`: learned position embedding, one fused c_attn split into q, k, v with
  `split`, explicit causal attention (`masked_fill`, `softmax`, `@`), GELU MLP.
- `GPT2Block`: the same with HF GPT-2's `Conv1D` layers: weights stored (in, out) and
  applied as `addmm(b, x.view(-1, nx), W)`, viewed back to (N, T, nf).
- `LlamaBlock`: RMSNorm, rotary embeddings, grouped-query attention (8 query heads, 2
  key/value heads, k and v repeated by `expand` + `reshape`), SwiGLU MLP.
- `MHABlock`: `nn.MultiheadAttention` as exported (fused in-projection, heads merged with
  the batch on the way).
- `SwinBlock`: window attention over a 4x4 token grid in 2x2 windows, shifted by `roll`,
  with a relative position bias table gathered per head and the shift's mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GPTBlock(nn.Module):
    input_shape = (6, 16)

    def __init__(self, dim: int = 16, heads: int = 4, tokens: int = 6) -> None:
        super().__init__()
        self.heads = heads
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.1)
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.proj = nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, 5)
        self.register_buffer(
            "bias", torch.tril(torch.ones(tokens, tokens)).view(1, 1, tokens, tokens)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C)
        x = x + self.pos
        n, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(n, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(n, t, c)
        x = x + self.c_proj(y)
        x = x + self.proj(F.gelu(self.fc(self.ln_2(x))))
        return self.head(x.mean(1))


class Conv1D(nn.Module):
    """HF transformers' GPT-2 layer: a Linear whose weight is stored (in, out)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) / math.sqrt(nx))
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = (*x.size()[:-1], self.nf)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Block(GPTBlock):
    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim)
        self.c_attn: nn.Module = Conv1D(3 * dim, dim)
        self.c_proj: nn.Module = Conv1D(dim, dim)
        self.fc: nn.Module = Conv1D(4 * dim, dim)
        self.proj: nn.Module = Conv1D(dim, 4 * dim)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaBlock(nn.Module):
    input_shape = (6, 16)

    def __init__(self, dim: int = 16, heads: int = 8, kv_heads: int = 2, head_dim: int = 4) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.input_layernorm = nn.RMSNorm(dim)
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=False)
        self.post_attention_layernorm = nn.RMSNorm(dim)
        self.gate_proj = nn.Linear(dim, 24, bias=False)
        self.up_proj = nn.Linear(dim, 24, bias=False)
        self.down_proj = nn.Linear(24, dim, bias=False)
        self.head = nn.Linear(dim, 5)
        inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(self.input_shape[0]).float(), inv)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q = self.q_proj(x).view(n, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * self.cos + _rotate_half(q) * self.sin
        k = k * self.cos + _rotate_half(k) * self.sin
        rep = self.heads // self.kv_heads
        k, v = (
            z[:, :, None]
            .expand(n, self.kv_heads, rep, t, self.head_dim)
            .reshape(n, self.heads, t, self.head_dim)
            for z in (k, v)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(n, t, self.heads * self.head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attention(self.input_layernorm(x))
        h = self.post_attention_layernorm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return self.head(x.mean(1))


class MHABlock(nn.Module):
    input_shape = (5, 12)

    def __init__(self, dim: int = 12, heads: int = 3) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x + self.attn(x, x, x, need_weights=False)[0])
        return self.head(x.mean(1))


class SwinBlock(nn.Module):
    input_shape = (4, 4, 8)  # (H, W, C) tokens, channels last as Swin keeps them

    def __init__(self, dim: int = 8, heads: int = 2, window: int = 2, shift: int = 1) -> None:
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.1)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("index", (rel[..., 0] * (2 * window - 1) + rel[..., 1]).flatten())
        self.register_buffer("mask", self._shift_mask())
        self.head = nn.Linear(dim, 3)

    def _shift_mask(self) -> torch.Tensor:
        h, w, _ = self.input_shape
        region = torch.zeros(h, w)
        for i, rows in enumerate(
            (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None))
        ):
            for j, cols in enumerate(
                (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None))
            ):
                region[rows, cols] = i * 3 + j
        windows = region.view(h // self.window, self.window, w // self.window, self.window)
        windows = windows.permute(0, 2, 1, 3).reshape(-1, self.window * self.window)
        diff = windows[:, None, :] - windows[:, :, None]
        return diff.ne(0).float().mul(-100.0)[None, :, None]  # (1, windows, 1, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        b, h, w, c = x.shape
        s, n = self.window, self.window * self.window
        t = torch.roll(self.norm(x), (-self.shift, -self.shift), (1, 2))
        t = t.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
        q, k, v = (
            self.qkv(t)
            .reshape(t.shape[0], n, 3, self.heads, c // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        att = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.table[self.index].view(n, n, -1).permute(2, 0, 1).contiguous()
        att = att + bias.unsqueeze(0)
        windows = (h // s) * (w // s)
        att = (att.view(b, windows, self.heads, n, n) + self.mask).view(-1, self.heads, n, n)
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
        y = (
            self.proj(y)
            .view(b, h // s, w // s, s, s, c)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(b, h, w, c)
        )
        x = x + torch.roll(y, (self.shift, self.shift), (1, 2))
        return self.head(x.mean((1, 2)))
