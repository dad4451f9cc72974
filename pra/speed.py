"""How the config's speed section applies on a device: which training modules are compiled and in which mode,
whether the optimiser and the EMA run as fused / multi-tensor kernels, whether training's host-side checks are
deferred to the log cadence, which dtype the sampling network holds, and how each position's head ODE runs
(eager, or a CUDA graph). 'auto' means on CUDA only, so CPU runs keep the plain path unless a setting says 'on'.

Execution settings only: none changes what is computed beyond floating-point rounding (bf16 sampling
weights: by the tolerance the GPU benchmark measures).
"""
from __future__ import annotations

import torch
from torch import nn

from pra.config import SpeedConfig
from pra.rollout import HeadODE, SamplerSettings

COMPILED_MODULES = ("trunk", "head", "encoder", "decoder")


def _on(value: str, device: torch.device) -> bool:
    return value == "on" or (value == "auto" and device.type == "cuda")


def compiles(speed: SpeedConfig, device: torch.device) -> bool:
    return _on(speed.compile, device)


def fused_optimizer(speed: SpeedConfig, device: torch.device) -> bool:
    return _on(speed.fused_optimizer, device)


def foreach_ema(speed: SpeedConfig, device: torch.device) -> bool:
    return _on(speed.foreach_ema, device)


def deferred_checks(speed: SpeedConfig, device: torch.device) -> bool:
    return _on(speed.deferred_checks, device)


def training(speed: SpeedConfig, device: torch.device) -> dict:
    """What a training job ran with (recorded in train.json)."""
    return {"compile": compiles(speed, device), "compile_mode": speed.compile_mode,
            "fused_optimizer": fused_optimizer(speed, device), "foreach_ema": foreach_ema(speed, device),
            "deferred_checks": deferred_checks(speed, device)}


def compile_modules(net: nn.Module, mode: str = "default") -> list[str]:
    """torch.compile each of the network's modules in place (nn.Module.compile: parameter names and the
    state_dict are unchanged, so checkpoints do not depend on it). The KV-cached decode (Trunk.step,
    Trunk.prefill) calls the trunk's body directly and stays eager: its shapes change at every position."""
    done = []
    for name in COMPILED_MODULES:
        m = getattr(net, name, None)
        if m is not None:
            m.compile(mode=None if mode == "default" else mode)
            done.append(name)
    return done


def sampling_dtype(speed: SpeedConfig, device: torch.device) -> torch.dtype:
    if speed.sample_precision == "bf16" or (speed.sample_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def uses_cuda_graphs(speed: SpeedConfig, device: torch.device) -> bool:
    return speed.cuda_graphs == "auto" and device.type == "cuda"


def head_ode(flow, net: nn.Module, settings: SamplerSettings, speed: SpeedConfig, device: torch.device) -> HeadODE:
    if uses_cuda_graphs(speed, device):
        from pra.head_graph import GraphedHeadODE

        return GraphedHeadODE(flow, net.head, settings)
    return HeadODE(flow, net.head, settings)


def describe(speed: SpeedConfig, device: torch.device) -> dict:
    """What a sampling job ran with (recorded beside its samples)."""
    return {"precision": str(sampling_dtype(speed, device)).replace("torch.", ""),
            "cuda_graphs": uses_cuda_graphs(speed, device)}
