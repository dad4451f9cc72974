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

The capture itself is a backend: CUDAGraphs (torch.cuda.CUDAGraph) on CUDA; RecordedSolve anywhere, which
"captures" by running the solve once on the static buffers and "replays" by running it again into the same
output buffer. It exists so that the logic around the graphs (one capture per key, reused for every position;
inputs copied into the static buffers; outputs copied out; the guard) runs and is tested on the CPU.
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


class CUDAGraphs:
    """Capture on CUDA: warm-up on a side stream (cuBLAS handles, lazy inits), then torch.cuda.graph."""

    def __init__(self, warmup: int = 2):
        self.warmup = warmup

    def check(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise RuntimeError("GraphedHeadODE needs CUDA tensors; use HeadODE on other devices")

    def capture(self, solve, device: torch.device):
        """Returns (graph, output buffer): graph.replay() rewrites the buffer from the static inputs."""
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                solve()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = solve()
        return graph, out


class RecordedSolve:
    """The capture logic without CUDA: 'capture' runs the solve on the static buffers and keeps it; 'replay'
    runs it again and writes the result into the same output buffer, as a graph replay does. Unlike a graph it
    re-runs the Python code at each replay, so it cannot show a host-side value frozen at capture (the guidance
    scale is a device tensor for that reason; the CUDA test checks graph against eager)."""

    class _Replay:
        def __init__(self, solve, out):
            self.solve, self.out, self.replays = solve, out, 0

        def replay(self) -> None:
            self.out.copy_(self.solve())
            self.replays += 1

    def check(self, device: torch.device) -> None:
        pass

    def capture(self, solve, device: torch.device):
        out = solve()
        return self._Replay(solve, out), out


class GraphedHeadODE(HeadODE):
    """HeadODE whose solve is captured once per (rows, guided, dtypes) and replayed; `backend` CUDAGraphs (CUDA
    tensors only) by default."""

    def __init__(self, flow, head, settings, warmup: int = 2, backend=None):
        super().__init__(flow, head, settings)
        self.backend = backend or CUDAGraphs(warmup)
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
        c.graph, c.out = self.backend.capture(lambda: self._solve(c), cond.device)
        return c

    def __call__(self, cond, uncond, cfg_scale, y0, t0):
        self.check_parameters()
        self.backend.check(cond.device)
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
