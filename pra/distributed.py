"""Data parallelism through torchrun: rank, world size and device come from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun (or a test) described in RANK/WORLD_SIZE/MASTER_ADDR."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the gradients as well: every rank's loss depends on every
    rank's input, so after DDP averages the parameter gradients they equal a single process's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


def global_mean(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Mean over `dim` across all ranks (equal local sizes), differentiable."""
    m = x.mean(dim)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        m = _SumAcrossRanks.apply(m) / dist.get_world_size()
    return m


def mean_across_ranks(values: dict[str, float], device) -> dict[str, float]:
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def any_across_ranks(flag: bool, device) -> bool:
    """True on every rank if it is true on any rank (so that all ranks stop at the same step)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def first_across_ranks(value: torch.Tensor) -> int:
    """The smallest non-negative value of a 0-d integer tensor over all ranks, -1 when every rank holds -1 (so
    that every rank sees a step any rank flagged). One host synchronisation."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return int(value)
    none = torch.iinfo(torch.long).max
    t = torch.where(value >= 0, value, torch.full_like(value, none)).to(torch.long).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    v = int(t.item())
    return -1 if v == none else v


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
