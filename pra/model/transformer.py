"""Causal transformer blocks: pre-RMSNorm attention (SDPA, 2-D RoPE) and a SwiGLU MLP, with a KV cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pra.model.rope import Rope2D


class KVCache:
    """Preallocated keys/values for every layer; `length` tokens are filled."""

    def __init__(self, depth: int, batch: int, heads: int, max_len: int, head_dim: int,
                 device, dtype):
        shape = (batch, heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(depth)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(depth)]
        self.length = 0
        self.max_len = max_len

    def repeat_batch(self, n: int) -> None:
        self.k = [k.repeat(n, 1, 1, 1) for k in self.k]
        self.v = [v.repeat(n, 1, 1, 1) for v in self.v]


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm whose weight follows the input's dtype, so that bf16 activations (autocast, bf16 inference
    weights) reach the fused kernel instead of the unfused fallback for mixed dtypes. fp32 is unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


def swiglu_hidden(width: int, ratio: float, multiple: int = 32) -> int:
    h = int(width * ratio)
    return max(multiple, (h + multiple - 1) // multiple * multiple)


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.w_gate = nn.Linear(width, hidden, bias=False)
        self.w_up = nn.Linear(width, hidden, bias=False)
        self.w_down = nn.Linear(hidden, width, bias=False)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x, rope: Rope2D, cache: KVCache | None = None, layer: int = 0):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        start = cache.length if cache is not None else 0
        q, k = rope(q, start), rope(k, start)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            end = start + L
            if end > cache.max_len:
                raise RuntimeError(f"KV cache overflow: {end} > {cache.max_len}")
            cache.k[layer][:, :, start:end] = k
            cache.v[layer][:, :, start:end] = v
            k_all, v_all = cache.k[layer][:, :, :end], cache.v[layer][:, :, :end]
            if L == 1:
                out = F.scaled_dot_product_attention(q, k_all, v_all)
            else:  # a chunk after `start` cached tokens: token j sees keys 0..start+j
                mask = torch.ones(L, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
                out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, L, -1))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = RMSNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = RMSNorm(width)
        self.mlp = SwiGLU(width, swiglu_hidden(width, mlp_ratio))

    def forward(self, x, rope, cache=None, layer=0):
        x = x + self.attn(self.norm1(x), rope, cache, layer)
        return x + self.mlp(self.norm2(x))


class CausalTransformer(nn.Module):
    """A stack of causal blocks over an already-embedded sequence; returns final-normed states."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float, grid: int, num_prefix: int,
                 rope_theta: float):
        super().__init__()
        self.width, self.depth, self.heads = width, depth, heads
        self.rope = Rope2D(width // heads, grid, num_prefix, rope_theta)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio) for _ in range(depth)])
        self.norm = RMSNorm(width)
        self.max_len = num_prefix + grid * grid

    def new_cache(self, batch: int, device, dtype=torch.float32) -> KVCache:
        return KVCache(self.depth, batch, self.heads, self.max_len, self.width // self.heads, device, dtype)

    def forward(self, x, cache: KVCache | None = None, collect: list | None = None):
        """collect: if a list is given, the residual stream after every block is appended to it."""
        for i, blk in enumerate(self.blocks):
            x = blk(x, self.rope, cache, i)
            if collect is not None:
                collect.append(x)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x)
