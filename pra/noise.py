"""Random draws that do not depend on how a global batch is split over processes.

Every rank holds the same generator state and draws noise for the *global* batch, then keeps its own
slice. One process with batch B and W processes with B/W each therefore see identical noise per
example, which makes data-parallel training reproduce single-process training.
"""
from __future__ import annotations

import torch


class Noise:
    def __init__(self, generator: torch.Generator, rank: int = 0, world: int = 1):
        self.generator = generator
        self.rank, self.world = rank, world

    @property
    def device(self):
        return self.generator.device

    def _draw(self, fn, shape, batch_dim, dtype):
        shape = list(shape)
        if self.world == 1:
            return fn(shape, generator=self.generator, device=self.device, dtype=dtype)
        n = shape[batch_dim]
        shape[batch_dim] = n * self.world
        full = fn(shape, generator=self.generator, device=self.device, dtype=dtype)
        return full.narrow(batch_dim, self.rank * n, n)

    def randn(self, *shape, batch_dim: int = 0, dtype=torch.float32) -> torch.Tensor:
        return self._draw(torch.randn, shape, batch_dim, dtype)

    def rand(self, *shape, batch_dim: int = 0, dtype=torch.float32) -> torch.Tensor:
        return self._draw(torch.rand, shape, batch_dim, dtype)


def as_noise(g) -> Noise:
    return g if isinstance(g, Noise) else Noise(g)
