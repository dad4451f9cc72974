"""Sequential (rollout) generation with a KV cache and classifier-free guidance.

At each AR position i: h_i from the trunk -> head ODE -> state y_i -> pixels x_i = D(y_i, h_i) (latent
heads) or x_i = y_i (pixel heads) -> x_i appended to the sequence. The same function produces the
inputs of the rollout training methods and the reference distribution of the diagnostics.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pra.config import SampleConfig
from pra.flow import Flow
from pra.model.network import PRANetwork
from pra.noise import Noise, as_noise


@dataclass(frozen=True)
class SamplerSettings:
    ode_steps: int = 16
    solver: str = "heun"
    cfg_scale: float = 1.0
    cfg_schedule: str = "linear"
    cfg_interval: tuple = (0.0, 1.0)
    temperature: float = 1.0

    @classmethod
    def from_config(cls, s: SampleConfig, **overrides) -> "SamplerSettings":
        kw = dict(ode_steps=s.ode_steps, solver=s.solver, cfg_scale=s.cfg_scale, cfg_schedule=s.cfg_schedule,
                  cfg_interval=tuple(s.cfg_interval), temperature=s.temperature)
        kw.update(overrides)
        return cls(**kw)

    def guidance_at(self, i: int, n: int) -> float:
        """Guidance scale at AR position i of n: constant, or a linear ramp from 1 to cfg_scale."""
        if self.cfg_schedule == "constant" or n == 1:
            return self.cfg_scale
        return 1.0 + (self.cfg_scale - 1.0) * i / (n - 1)


@dataclass
class Rollout:
    patches: torch.Tensor   # [B, N, P] pixels fed back to the trunk (the generated image, in [-1, 1])
    states: torch.Tensor    # [B, N, D] head outputs (z for latent heads)
    hidden: torch.Tensor    # [B, N, W] conditional trunk states h_i


@torch.no_grad()
def rollout(net: PRANetwork, flow: Flow, labels: torch.Tensor, settings: SamplerSettings,
            noise: Noise | torch.Generator, *, anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
            initial: torch.Tensor | None = None, use_cache: bool = True) -> Rollout:
    """Generate N tokens for `labels` [B].

    anchor=(y_true [B, N, D], t [B, N]): position i's ODE starts at t_i from t_i*y_true_i + (1-t_i)*eps
    instead of from pure noise (the anchored_rollout training method).
    initial [B, N, D]: the head ODE's starting noise at every position (instead of fresh draws, already
    scaled by the temperature), so that two generators can share it (paired comparisons).
    use_cache=False recomputes the whole prefix at every step (the reference for the KV-cache test
    and benchmark).
    """
    g = net.geometry
    noise = as_noise(noise)
    B, N, device = labels.shape[0], g.num_tokens, labels.device
    guided = settings.cfg_scale != 1.0
    lab = torch.cat([labels, torch.full_like(labels, net.trunk.null_label)]) if guided else labels
    dtype = next(net.parameters()).dtype
    patches = torch.zeros(B, N, g.patch_dim, device=device, dtype=dtype)
    states, hidden = [], []
    cache = net.trunk.new_cache(lab.shape[0], device, dtype) if use_cache else None
    h = net.trunk.prefill(lab, cache) if use_cache else net.trunk(patches[:, :0].repeat(lab.shape[0] // B, 1, 1), lab)[:, -1]
    for i in range(N):
        cond, uncond = (h[:B], h[B:]) if guided else (h, None)
        kw = {}
        if anchor is not None:
            y_true, t = anchor[0][:, i], anchor[1][:, i]
            eps = noise.randn(*y_true.shape, dtype=dtype)
            kw = dict(y_start=t[:, None] * y_true + (1 - t[:, None]) * eps, t_start=t)
        elif initial is not None:
            kw = dict(y_start=initial[:, i].to(dtype), t_start=torch.zeros(B, device=device, dtype=dtype))
        y = flow.sample(net.head, cond, steps=settings.ode_steps, solver=settings.solver, uncond=uncond,
                        cfg_scale=settings.guidance_at(i, N), cfg_interval=settings.cfg_interval,
                        temperature=settings.temperature, noise=noise, **kw)
        x = net.to_pixels(y, cond)
        patches[:, i] = x
        states.append(y)
        hidden.append(cond)
        if i < N - 1:
            if use_cache:
                h = net.trunk.step(torch.cat([x, x]) if guided else x, cache)
            else:
                prefix = patches[:, : i + 1]
                h = net.trunk(torch.cat([prefix, prefix]) if guided else prefix, lab)[:, -1]
    return Rollout(patches, torch.stack(states, 1), torch.stack(hidden, 1))


def balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Class-balanced labels 0,0,...,1,1,... (per_class of each)."""
    return torch.arange(num_classes).repeat_interleave(per_class)
