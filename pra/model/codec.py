"""The learned intermediate state: a causal encoder x -> z and a pixel decoder (z, context) -> x."""
from __future__ import annotations

import torch
from torch import nn

from pra.model.transformer import CausalTransformer


class Encoder(nn.Module):
    """Causal transformer over patches; z_i depends on x_1..x_i.

    `token_mask` [B, N] (True = replace the patch embedding by the learned mask embedding) implements
    the paper's two-level encoder masking; which tokens to mask is decided by the caller.
    """

    def __init__(self, *, patch_dim: int, z_dim: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 grid: int, rope_theta: float):
        super().__init__()
        self.patch_in = nn.Linear(patch_dim, width)
        # a small random start (MAE's std 0.02): at exactly zero the first block's RMSNorm divides by sqrt(eps) and
        # this one vector's gradient would dominate the global norm, and so the gradient clip, of every latent arm
        self.mask_token = nn.Parameter(torch.empty(width).normal_(0.0, 0.02))
        self.body = CausalTransformer(width, depth, heads, mlp_ratio, grid, 0, rope_theta)
        self.out = nn.Linear(width, z_dim)

    def forward(self, patches: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        e = self.patch_in(patches)
        if token_mask is not None:
            e = torch.where(token_mask[..., None], self.mask_token.to(e.dtype), e)
        return self.out(self.body(e))


class ResMLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(),
                                 nn.Linear(2 * width, width))

    def forward(self, x):
        return x + self.net(x)


class PixelDecoder(nn.Module):
    """Per-token MLP from the state z_i (and optionally the trunk state h_i) to the pixel patch x_i."""

    def __init__(self, *, z_dim: int, context_dim: int, width: int, depth: int, patch_dim: int):
        super().__init__()
        self.z_in = nn.Linear(z_dim, width)
        self.ctx_in = nn.Linear(context_dim, width) if context_dim else None
        self.blocks = nn.Sequential(*[ResMLP(width) for _ in range(depth)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, patch_dim))

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.z_in(z)
        if self.ctx_in is not None:
            if context is None:
                raise ValueError("this decoder was built with context; pass the trunk state")
            x = x + self.ctx_in(context)
        return self.out(self.blocks(x))
