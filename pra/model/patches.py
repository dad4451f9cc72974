"""Images <-> patch sequences. Pixels live in [-1, 1]; a patch is (p, p, C) flattened, raster order."""
from __future__ import annotations

import numpy as np
import torch


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float [B, H, W, C] in [-1, 1]."""
    return images_u8.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [B, H, W, C] in [-1, 1] -> uint8, rounding and clipping."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def on_8bit_grid(x: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1] and round to the 255 steps of an 8-bit image (what saving a sample does)."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def image_patches(images_u8: np.ndarray, p: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images [B, H, W, C] (numpy) -> patches [B, N, p*p*C] in [-1, 1] on `device`."""
    return patchify(to_unit(torch.from_numpy(np.ascontiguousarray(images_u8)).to(device)), p)


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C]."""
    B, H, W, C = images.shape
    x = images.reshape(B, H // p, p, W // p, p, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(patches: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """[B, N, p*p*C] -> [B, H, W, C] for a square grid."""
    B, N, _ = patches.shape
    g = int(round(N ** 0.5))
    x = patches.reshape(B, g, g, p, p, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, g * p, g * p, channels)
