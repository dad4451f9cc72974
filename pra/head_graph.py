"""CUDA-graph replay of one AR position's head ODE.

The head ODE of a position is thousands of small kernels (every solver step runs the head twice with
guidance, each head a few dozen kernels) on a few thousand rows: launch-bound on a large GPU. Its shapes do
not change from one position to the next, so the whole solve is captured once per (rows, guided) and
replayed for every position of every batch: the same kernels as HeadODE, launched by the driver in one
call. Inputs are copied into static buffers before each replay; the output is copied out after it.

A graph reads the head's parameters by address. Updating their values in place is fine (a replay reads the
current values), but moving the head to another device or dtype, or replacing its tensors, leaves the graph
reading freed memory: every replay first compares the parameters' addresses, dtypes and devices with those
at capture and refuses to run if they changed (build a new GraphedHeadODE then).
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


def parameter_fingerprint(module: torch.nn.Module) -> tuple:
    """What a captured graph depends on: each parameter's address, dtype, device and shape."""
    return tuple((p.data_ptr(), p.dtype, p.device, tuple(p.shape)) for p in module.parameters())


def capture_key(cond: torch.Tensor, uncond: torch.Tensor | None, cfg_scale: float, y0: torch.Tensor) -> tuple:
    """One graph per (rows, guided, dtypes): guidance is off when there is no unconditional state or the scale
    is 1, so the unguided solve (half the head calls) gets its own graph."""
    return (cond.shape[0], uncond is not None and cfg_scale != 1, cond.dtype, y0.dtype)


class GraphedHeadODE(HeadODE):
    """HeadODE whose solve is a CUDA graph (CUDA tensors only)."""

    def __init__(self, flow, head, settings, warmup: int = 2):
        super().__init__(flow, head, settings)
        self.warmup = warmup
        self.graphs: dict[tuple, _Captured] = {}
        self.fingerprint: tuple | None = None  # of the head's parameters when the graphs were captured

    def check_parameters(self) -> None:
        if self.fingerprint is not None and parameter_fingerprint(self.head) != self.fingerprint:
            raise RuntimeError("the head's parameters were moved, re-typed or replaced after its CUDA graphs were "
                               "captured; a replay would read stale memory: build a new GraphedHeadODE")

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
        self.check_parameters()
        if cond.device.type != "cuda":
            raise RuntimeError("GraphedHeadODE needs CUDA tensors; use HeadODE on other devices")
        key = capture_key(cond, uncond, cfg_scale, y0)
        guided = key[1]
        c = self.graphs.get(key)
        if c is None:
            c = self.graphs[key] = self._capture(cond, uncond if guided else None, y0, t0)
            self.fingerprint = parameter_fingerprint(self.head)
        c.cond.copy_(cond)
        if guided:
            c.uncond.copy_(uncond)
            c.w.fill_(cfg_scale)
        c.y0.copy_(y0)
        c.t0.copy_(t0)
        c.graph.replay()
        return c.out.clone()
