"""2-D rotary position embedding over patch (row, col) coordinates.

Half of each head's channels rotate with the row index, the other half with the column index.
Tokens without a spatial position (the class prefix) get the identity rotation (angle 0), not a
zero-padded slot.
"""
from __future__ import annotations

import torch
from torch import nn


def grid_coords(grid: int) -> torch.Tensor:
    """(row, col) of each patch in raster order, shape [grid*grid, 2]."""
    r = torch.arange(grid).repeat_interleave(grid)
    c = torch.arange(grid).repeat(grid)
    return torch.stack([r, c], dim=1)


class Rope2D(nn.Module):
    """Precomputed cos/sin tables for a sequence of `num_prefix` non-spatial tokens followed by patches.

    The tables are buffers (they follow `.to(device)`), not persistent state: they are derived from
    the constructor arguments.
    """

    def __init__(self, head_dim: int, grid: int, num_prefix: int, theta: float = 100.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
        quarter = head_dim // 4
        freqs = 1.0 / (theta ** (torch.arange(quarter, dtype=torch.float64) / quarter))
        coords = grid_coords(grid).to(torch.float64)  # [N, 2]
        ang_r = coords[:, :1] * freqs  # [N, quarter]
        ang_c = coords[:, 1:] * freqs
        ang = torch.cat([ang_r, ang_c], dim=1)  # [N, head_dim/2]
        ang = torch.cat([torch.zeros(num_prefix, ang.shape[1], dtype=torch.float64), ang], dim=0)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate x [B, H, L, D] whose tokens sit at sequence positions start..start+L-1."""
        L = x.shape[-2]
        cos = self.cos[start:start + L].to(x.dtype)
        sin = self.sin[start:start + L].to(x.dtype)
        # channels [0, D/2) hold the "first" element of each rotated pair, [D/2, D) the second.
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
