"""What the benchmarks share: the measured matmul peak, the training step as pra.train runs it on a fixed
batch, interleaved timing, and the met/not-met wording of a target."""
from __future__ import annotations

import statistics
import time

import torch

from pra.checkpoint import build_network
from pra.config import ExperimentConfig
from pra.model.network import Geometry
from pra.noise import Noise
from pra.runtime import generator, set_threads
from pra.step import TrainStep


def matmul_peak(threads: int, n: int = 2048, reps: int = 10) -> float:
    """Measured fp32 matmul throughput (FLOP/s) of this machine with `threads` threads."""
    set_threads(threads)
    g = generator(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


class StepRunner:
    """The training step of pra.train (pra.step.TrainStep: forward under the config's precision, backward,
    the config's clipping, AdamW, schedule, EMA) of one method on a fixed random batch, optionally with the
    modules compiled (pra.speed). Batch drawing and logging are not part of what it times."""

    def __init__(self, cfg: ExperimentConfig, scale: str, method: str, geom: Geometry, batch: int,
                 device: torch.device | str = "cpu", compile: bool = False):
        self.device = torch.device(device)
        self.net = build_network(cfg, scale, method, geom, init_seed=0).to(self.device)
        self.train_step = TrainStep(cfg, self.net, method, self.device, compile=compile)
        self.compiled = self.train_step.compiled
        self.autocast = self.train_step.autocast
        g = generator(123)
        self.x = (torch.rand(batch, geom.num_tokens, geom.patch_dim, generator=g) * 2 - 1).to(self.device)
        self.y = torch.randint(0, geom.num_classes, (batch,), generator=g).to(self.device)
        self.noise = Noise(generator(7, self.device))

    def loss(self):
        return self.train_step.loss(self.x, self.y, self.noise)[0]

    def step(self) -> float:
        self.sync()
        t = time.perf_counter()
        self.train_step(self.x, self.y, self.noise)
        self.sync()
        return time.perf_counter() - t

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def saved_activation_bytes(self) -> int:
        """Bytes of the tensors autograd keeps for backward (parameters excluded, storages deduplicated)."""
        params = {p.data_ptr() for p in self.net.parameters()}
        seen: dict[tuple, int] = {}

        def pack(t):
            if t.data_ptr() not in params:
                seen[(t.untyped_storage().data_ptr(),)] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self.loss()
        del loss
        return sum(seen.values())

    def flops(self) -> int:
        """FLOPs of the step's forward and backward, attention included (pra.flops)."""
        from pra.flops import counter

        with counter() as fc:
            loss = self.loss()
            loss.backward()
        self.train_step.opt.zero_grad(set_to_none=True)
        return fc.get_total_flops()


def time_interleaved(runners: dict[str, StepRunner], warmup: int, reps: int) -> dict[str, float]:
    for _ in range(warmup):
        for r in runners.values():
            r.step()
    times = {k: [] for k in runners}
    for _ in range(reps):
        for k, r in runners.items():
            times[k].append(r.step())
    return {k: statistics.median(v) for k, v in times.items()}


def check_target(value: float, target, show=str) -> str:
    """'met' or 'NOT met' against target (op, bound); `show` formats the bound."""
    op, bound = target
    ok = value <= bound if op == "<=" else value >= bound
    return f"{'met' if ok else 'NOT met'} (target {op} {show(bound)})"
