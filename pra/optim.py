"""The optimiser and the learning-rate schedule of training (shared by the training job and the benchmark)."""
from __future__ import annotations

import math

import torch
from torch import nn

from pra.config import ExperimentConfig


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine to zero at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(net: nn.Module, cfg: ExperimentConfig, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW; no weight decay on vectors (norms, biases) and the class tokens. `fused`: torch's fused AdamW
    (pra.speed.fused_optimizer); otherwise torch's default implementation."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (decay if p.ndim >= 2 and "class_tokens" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.train.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.train.lr, betas=tuple(cfg.train.betas), fused=True if fused else None)


def make_scheduler(opt: torch.optim.Optimizer, cfg: ExperimentConfig) -> torch.optim.lr_scheduler.LambdaLR:
    tc = cfg.train
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc.warmup_steps, tc.steps, tc.schedule))
