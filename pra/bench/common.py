"""What the benchmarks share: the measured matmul peak, the training step as pra.train runs it on a fixed
batch (StepRunner), the training job's whole iteration on a prepared split (JobRunner), interleaved timing, and
the met/not-met wording of a target."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pra.checkpoint import build_network
from pra.config import ExperimentConfig
from pra.io import save_npy, write_json
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


def write_random_split(out_dir: str | Path, *, resolution: int, channels: int, count: int, num_classes: int,
                       seed: int = 0) -> Path:
    """A prepared folder (pra.data.prepare's layout: one train shard, its manifest) of uniform random uint8
    images, for timing the job's data loading at any geometry (speed does not depend on the pixels)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_npy(out / "train-00000.images.npy",
             rng.integers(0, 256, (count, resolution, resolution, channels), dtype=np.uint8))
    labels = rng.integers(0, num_classes, count).astype(np.int64)
    save_npy(out / "train-00000.labels.npy", labels)
    write_json(out / "manifest.json", {
        "format": 1, "source": "random (benchmark)", "resolution": resolution, "channels": channels,
        "classes": [str(i) for i in range(num_classes)], "num_classes": num_classes,
        "splits": {"train": {"count": count, "inputs": count,
                             "per_class": np.bincount(labels, minlength=num_classes).tolist(),
                             "shards": [{"stem": "train-00000", "count": count}]}}})
    return out


class JobRunner:
    """The training job's iteration (pra.train.Iteration) as `pra.train` runs it: the batch drawn from a
    prepared split on disk and copied to the device, the step under the config's precision and speed section,
    the loss terms added to the log window and, every train.log_every steps, the deferred check and the log's
    flush (to a file; no MLflow). `step()` times a window of `window` iterations (default train.log_every, so
    one flush each) and returns seconds per iteration: the host may run ahead of the device inside it, as in
    the job."""

    def __init__(self, cfg: ExperimentConfig, scale: str, method: str, data_dir: str | Path, log_dir: str | Path,
                 device: torch.device | str = "cpu", compile: bool = False, window: int | None = None):
        from pra import distributed as D
        from pra import tracking
        from pra.checkpoint import geometry_of
        from pra.data.dataset import PreparedSplit
        from pra.train import Batches, Iteration, MetricsLog

        self.device = torch.device(device)
        data = PreparedSplit(data_dir, "train")
        dinfo = D.DistInfo()
        self.net = build_network(cfg, scale, method, geometry_of(cfg, data), init_seed=0).to(self.device)
        self.train_step = TrainStep(cfg, self.net, method, self.device, compile=compile)
        self.compiled = self.train_step.compiled
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(log_dir / f"{scale}-{method}.jsonl", on_device=self.train_step.deferred)
        self.iteration = Iteration(cfg, self.train_step, Batches(data, cfg, 0, dinfo, self.device),
                                   Noise(generator(7, self.device)), log, tracking.Run(None, cfg.name, "bench"),
                                   dinfo)
        self.window = window or cfg.train.log_every
        self.done = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> float:
        self.sync()
        t = time.perf_counter()
        for _ in range(self.window):
            self.done = self.iteration(self.done)
        self.sync()
        return (time.perf_counter() - t) / self.window


def time_interleaved_all(runners: dict, warmup: int, reps: int) -> dict[str, list[float]]:
    """Every timing of `reps` rounds, one step() of each runner per round (after `warmup` rounds)."""
    for _ in range(warmup):
        for r in runners.values():
            r.step()
    times = {k: [] for k in runners}
    for _ in range(reps):
        for k, r in runners.items():
            times[k].append(r.step())
    return times


def time_interleaved(runners: dict, warmup: int, reps: int) -> dict[str, float]:
    """Median of each runner's step() over `reps` interleaved rounds."""
    return {k: statistics.median(v) for k, v in time_interleaved_all(runners, warmup, reps).items()}


def check_target(value: float, target, show=str) -> str:
    """'met' or 'NOT met' against target (op, bound); `show` formats the bound."""
    op, bound = target
    ok = value <= bound if op == "<=" else value >= bound
    return f"{'met' if ok else 'NOT met'} (target {op} {show(bound)})"
