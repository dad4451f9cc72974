"""CUDA-graph replay of one AR position's head ODE.

The head ODE of a position is thousands of small kernels (every solver step runs the head twice with
guidance, each head a few dozen kernels) on a few thousand rows: launch-bound on a large GPU. Its shapes do
not change from one position to the next, so the whole solve is captured once per (rows, guided) and
replayed for every position of every batch: the same kernels as HeadODE, launched by the driver in one
call. Inputs are copied into static buffers before each replay; the output is copied out after it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pra.rollout import HeadODE


@dataclass
class _Captured:
    graph: "torch.cuda.CUDAGraph"
    cond: torch.Tensor
    uncond: torch.Tensor | None
    w: torch.Tensor
    y0: torch.Tensor
    t0: torch.Tensor
    out: torch.Tensor


class GraphedHeadODE(HeadODE):
    """HeadODE whose solve is a CUDA graph (CUDA tensors only). `captures` counts the graphs made."""

    def __init__(self, flow, head, settings, warmup: int = 2):
        super().__init__(flow, head, settings)
        self.warmup = warmup
        self.graphs: dict[tuple, _Captured] = {}

    def _solve(self, c: _Captured) -> torch.Tensor:
        s = self.settings
        # a 0-d tensor scale: guidance stays on inside the graph, its value is read at replay
        return self.flow.sample(self.head, c.cond, steps=s.ode_steps, solver=s.solver, uncond=c.uncond,
                                cfg_scale=c.w if c.uncond is not None else 1.0, cfg_interval=s.cfg_interval,
                                y_start=c.y0, t_start=c.t0)

    @torch.no_grad()
    def _capture(self, cond, uncond, y0, t0) -> _Captured:
        c = _Captured(None, cond.clone(), None if uncond is None else uncond.clone(),
                      torch.ones((), device=y0.device, dtype=y0.dtype), y0.clone(), t0.clone(), None)
        side = torch.cuda.Stream(device=cond.device)
        side.wait_stream(torch.cuda.current_stream(cond.device))
        with torch.cuda.stream(side):  # warm-up outside the capture (cuBLAS handles, lazy inits)
            for _ in range(self.warmup):
                self._solve(c)
        torch.cuda.current_stream(cond.device).wait_stream(side)
        c.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(c.graph):
            c.out = self._solve(c)
        return c

    def __call__(self, cond, uncond, cfg_scale, y0, t0):
        if cond.device.type != "cuda":
            raise RuntimeError("GraphedHeadODE needs CUDA tensors; use HeadODE on other devices")
        guided = uncond is not None and cfg_scale != 1
        key = (cond.shape[0], guided, cond.dtype, y0.dtype)
        c = self.graphs.get(key)
        if c is None:
            c = self.graphs[key] = self._capture(cond, uncond if guided else None, y0, t0)
        c.cond.copy_(cond)
        if guided:
            c.uncond.copy_(uncond)
            c.w.fill_(cfg_scale)
        c.y0.copy_(y0)
        c.t0.copy_(t0)
        c.graph.replay()
        return c.out.clone()
