"""How the config's speed section applies on a device: which training modules are compiled, which dtype the
sampling network holds, and how each position's head ODE runs (eager, or a CUDA graph).

Execution settings only: none changes what is computed beyond floating-point rounding (bf16 sampling
weights: by the tolerance the GPU benchmark measures).
"""
from __future__ import annotations

import torch
from torch import nn

from pra.config import SpeedConfig
from pra.rollout import HeadODE, SamplerSettings

COMPILED_MODULES = ("trunk", "head", "encoder", "decoder")


def compiles(speed: SpeedConfig, device: torch.device) -> bool:
    return speed.compile == "on" or (speed.compile == "auto" and device.type == "cuda")


def compile_modules(net: nn.Module) -> list[str]:
    """torch.compile each of the network's modules in place (nn.Module.compile: parameter names and the
    state_dict are unchanged, so checkpoints do not depend on it). The KV-cached decode (Trunk.step,
    Trunk.prefill) calls the trunk's body directly and stays eager: its shapes change at every position."""
    done = []
    for name in COMPILED_MODULES:
        m = getattr(net, name, None)
        if m is not None:
            m.compile()
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
