"""One training step, the only one: what `pra.train` runs, what the benchmarks time and what `estimate` counts.

A `TrainStep` owns the network with its EMA copy (pra.checkpoint.TrainedModel), the objective, the optimiser
and the learning-rate schedule, all built from the run's config, and performs forward (bf16 autocast per
`train.precision` on CUDA), the non-finite check, backward, gradient clipping (`train.grad_clip`), the AdamW
step, the schedule step and the EMA update (`train.ema_decay`), in that order.

The config's speed section (pra.speed) decides how: compiled modules and their mode, fused AdamW, the EMA as
one multi-tensor kernel, and whether the non-finite check runs on the host every step or on the device, read by
`check()` at the caller's cadence. Each is off on the CPU unless set 'on'.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pra.checkpoint import TrainedModel
from pra.config import ExperimentConfig
from pra.model.network import PRANetwork
from pra.noise import Noise
from pra.objective import Objective
from pra.optim import make_optimizer, make_scheduler
from pra import distributed as D
from pra import speed as S


class LossModule(nn.Module):
    """net + objective behind one forward(), so that DistributedDataParallel sees the whole step."""

    def __init__(self, net: PRANetwork, objective: Objective):
        super().__init__()
        self.net = net
        self.objective = objective

    def forward(self, x, labels, noise):
        return self.objective(self.net, x, labels, noise)


def uses_autocast(cfg: ExperimentConfig, device: torch.device) -> bool:
    """bf16 autocast: on CUDA unless train.precision is fp32 (on the CPU training is always fp32)."""
    return device.type == "cuda" and cfg.train.precision in ("auto", "bf16")


@dataclass
class StepResult:
    loss: torch.Tensor          # detached
    logs: dict                  # detached loss terms of the objective
    grad_norm: torch.Tensor     # before clipping (0 when clipping is off)


class TrainStep:
    """The training step of one (scale, method) run. `compile` compiles the network's modules in place
    (pra.speed, in the speed section's compile_mode); `ddp` wraps the loss in DistributedDataParallel. The
    optimiser, the EMA and the non-finite check follow cfg.speed on `device` (pra.speed)."""

    def __init__(self, cfg: ExperimentConfig, net: PRANetwork, method: str, device: torch.device,
                 ddp: bool = False, compile: bool = False):
        self.cfg = cfg
        self.device = torch.device(device)
        self.net = net
        self.model = TrainedModel(net)        # the EMA copy is taken before any compilation
        self.compiled = S.compile_modules(net, cfg.speed.compile_mode) if compile else []
        self.fused = S.fused_optimizer(cfg.speed, self.device)
        self.foreach_ema = S.foreach_ema(cfg.speed, self.device)
        self.deferred = S.deferred_checks(cfg.speed, self.device)
        self._step: torch.Tensor | None = None        # deferred: the step index, counted on the device
        self._nonfinite: torch.Tensor | None = None   # deferred: the first step with a non-finite loss, or -1
        self.objective = Objective(method, cfg.model, cfg.method, net.latent)
        self.opt = make_optimizer(net, cfg, fused=self.fused)
        self.sched = make_scheduler(self.opt, cfg)
        self.autocast = uses_autocast(cfg, self.device)
        self.loss_fn: nn.Module = LossModule(net, self.objective)
        if ddp:
            self.loss_fn = nn.parallel.DistributedDataParallel(
                self.loss_fn, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def loss(self, x: torch.Tensor, labels: torch.Tensor, noise: Noise):
        """The objective's (loss, logs) under the step's precision (forward only)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.loss_fn(x, labels, noise)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, noise: Noise, step: int | None = None) -> StepResult:
        """One optimisation step on a batch of clean patches x [B, N, P] in [-1, 1] and labels [B]. A non-finite
        loss raises FloatingPointError before any parameter changes, or, with deferred checks, is flagged on the
        device for the next `check()` (the parameters of that and later steps are then not to be kept)."""
        loss, logs = self.loss(x, labels, noise)
        if self.deferred:
            self._flag(loss.detach(), step)
        elif not torch.isfinite(loss):
            at = f" at step {step}" if step is not None else ""
            raise FloatingPointError(f"non-finite loss {loss.item()}{at} "
                                     f"({ {k: float(v) for k, v in logs.items()} })")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.train.grad_clip
        gnorm = nn.utils.clip_grad_norm_(self.net.parameters(), clip) if clip > 0 else torch.tensor(0.0)
        self.opt.step()
        self.sched.step()
        self.model.update_ema(self.cfg.train.ema_decay, foreach=self.foreach_ema)
        return StepResult(loss.detach(), logs, gnorm)

    def _flag(self, loss: torch.Tensor, step: int | None) -> None:
        """Device-side bookkeeping of the deferred check (no host synchronisation after the first call)."""
        if self._step is None:
            self._step = torch.tensor(step or 0, device=loss.device)
            self._nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        else:
            self._step += 1
        first = (~torch.isfinite(loss)) & (self._nonfinite < 0)
        self._nonfinite = torch.where(first, self._step, self._nonfinite)

    def check(self, step: int | None = None) -> None:
        """With deferred checks: raise FloatingPointError if any step so far had a non-finite loss on any rank
        (one host synchronisation, and with several processes one all-reduce: the gradient all-reduce has
        spread such a step's values to every rank), naming the first such step. Every rank calls it at the same
        steps. Without deferred checks: nothing to do (every step was checked)."""
        if not self.deferred:
            return
        flag = self._nonfinite if self._nonfinite is not None else \
            torch.full((), -1, dtype=torch.long, device=self.device)
        first = D.first_across_ranks(flag)
        if first >= 0:
            at = f"; checked after step {step}" if step is not None else ""
            raise FloatingPointError(f"non-finite loss at step {first} (speed.deferred_checks: read every "
                                     f"train.log_every steps{at})")

    @property
    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def state(self) -> dict:
        """What a resumable checkpoint needs of the step (beside the RNG states and the loop's position)."""
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        for group in self.opt.param_groups:  # the implementation is this job's setting, not the saved state's
            group["fused"], group["foreach"] = (True if self.fused else None), None
        self.sched.load_state_dict(state["scheduler"])
