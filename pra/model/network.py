"""The PRA network: trunk, flow head, and (for latent methods) encoder and pixel decoder.

Only the networks live here; how their inputs are built and how they are trained is pra.objective,
how they are sampled is pra.rollout.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pra.config import LATENT_METHODS, ModelConfig
from pra.model.codec import Encoder, PixelDecoder
from pra.model.head import FlowHead
from pra.model.scales import Scale
from pra.model.trunk import Trunk


@dataclass(frozen=True)
class Geometry:
    resolution: int
    channels: int
    patch_size: int
    num_classes: int

    @property
    def grid(self) -> int:
        return self.resolution // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid ** 2

    @property
    def patch_dim(self) -> int:
        return self.patch_size ** 2 * self.channels


class PRANetwork(nn.Module):
    def __init__(self, scale: Scale, model: ModelConfig, geometry: Geometry, method: str):
        super().__init__()
        self.geometry = geometry
        self.latent = method in LATENT_METHODS
        g = geometry
        self.trunk = Trunk(width=scale.width, depth=scale.depth, heads=scale.heads, mlp_ratio=model.mlp_ratio,
                           patch_dim=g.patch_dim, grid=g.grid, num_classes=g.num_classes,
                           prefix_tokens=model.prefix_tokens, rope_theta=model.rope_theta)
        target_dim = model.z_dim if self.latent else g.patch_dim
        self.head = FlowHead(target_dim=target_dim, cond_dim=scale.width, width=scale.head_width,
                             depth=scale.head_depth)
        if self.latent:
            self.encoder = Encoder(patch_dim=g.patch_dim, z_dim=model.z_dim, width=scale.enc_width,
                                   depth=scale.enc_depth, heads=scale.enc_heads, mlp_ratio=model.mlp_ratio,
                                   grid=g.grid, rope_theta=model.rope_theta)
            self.decoder = PixelDecoder(z_dim=model.z_dim, context_dim=scale.width if model.decoder_context else 0,
                                        width=scale.dec_width, depth=scale.dec_depth, patch_dim=g.patch_dim)
        else:
            self.encoder = None
            self.decoder = None

    def to_pixels(self, state: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """What is fed back to the trunk for a generated state: D(z, h) for latent heads, the patch itself otherwise."""
        if not self.latent:
            return state
        return self.decoder(state, context if self.decoder.ctx_in is not None else None)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
