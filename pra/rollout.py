"""Sequential (rollout) generation with a KV cache and classifier-free guidance.

At each AR position i: h_i from the trunk -> head ODE -> state y_i -> pixels x_i = D(y_i, h_i) (latent
heads) or x_i = y_i (pixel heads) -> x_i appended to the sequence. The same function produces the
inputs of the rollout training methods and the reference distribution of the diagnostics.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pra.config import SampleConfig
from pra.flow import Flow, state_dtype
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


class HeadODE:
    """One AR position's head ODE, from given start states to t = 1, with the sampler's settings (eager).

    pra.head_graph.GraphedHeadODE replays the same solve as a CUDA graph; rollout() takes either."""

    def __init__(self, flow: Flow, head, settings: SamplerSettings):
        self.flow, self.head, self.settings = flow, head, settings

    def __call__(self, cond: torch.Tensor, uncond: torch.Tensor | None, cfg_scale: float, y0: torch.Tensor,
                 t0: torch.Tensor) -> torch.Tensor:
        s = self.settings
        return self.flow.sample(self.head, cond, steps=s.ode_steps, solver=s.solver, uncond=uncond,
                                cfg_scale=cfg_scale, cfg_interval=s.cfg_interval, y_start=y0, t_start=t0)


@dataclass
class Rollout:
    patches: torch.Tensor   # [B, N, P] pixels fed back to the trunk (the generated image, in [-1, 1])
    states: torch.Tensor    # [B, N, D] head outputs (z for latent heads)
    hidden: torch.Tensor    # [B, N, W] conditional trunk states h_i


@torch.no_grad()
def rollout(net: PRANetwork, flow: Flow, labels: torch.Tensor, settings: SamplerSettings,
            noise: Noise | torch.Generator, *, anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
            anchor_noise: torch.Tensor | None = None, initial: torch.Tensor | None = None, use_cache: bool = True, ode: HeadODE | None = None,
            positions: int | None = None, prefix: torch.Tensor | None = None) -> Rollout:
    """Generate N tokens for `labels` [B].

    anchor=(y_true [B, N, D], t [B, N]): position i's ODE starts at t_i from t_i*y_true_i + (1-t_i)*eps
    instead of from pure noise (the anchored_rollout training method); anchor_noise [B, N, D]: that eps, given
    instead of drawn (constructions that share their draws, pra.diagnostics.approximation).
    initial [B, N, D]: the head ODE's starting noise at every position (instead of fresh draws, already
    scaled by the temperature), so that two generators can share it (paired comparisons).
    use_cache=False recomputes the whole prefix at every step (the reference for the KV-cache test
    and benchmark).
    ode: how each position's head ODE is solved (default: HeadODE, eager); the start noise is drawn here, in
    the same order either way, so the choice changes no random draw.
    The network may hold bf16 weights (fast sampling): the ODE state stays fp32 (pra.flow.state_dtype).
    positions: generate only the first n positions (benchmarks time slow paths on a prefix); default all.
    prefix [B, s, P]: the first s positions are these patches, fed to the trunk as they are (no head ODE is
    solved there; their states are zeros), and generation continues from position s. Start noise is drawn (or
    taken from `initial`) only for generated positions, so with `initial` two sets with different prefix
    lengths start every position they both generate from the same noise.
    """
    g = net.geometry
    noise = as_noise(noise)
    B, N, device = labels.shape[0], positions or g.num_tokens, labels.device
    guided = settings.cfg_scale != 1.0
    lab = torch.cat([labels, torch.full_like(labels, net.trunk.null_label)]) if guided else labels
    dtype = next(net.parameters()).dtype
    sd = state_dtype(dtype)
    D = net.head.out.out_features
    ode = ode if ode is not None else HeadODE(flow, net.head, settings)
    patches = torch.zeros(B, N, g.patch_dim, device=device, dtype=dtype)
    states, hidden = [], []
    cache = net.trunk.new_cache(lab.shape[0], device, dtype) if use_cache else None
    h = net.trunk.prefill(lab, cache) if use_cache else net.trunk(patches[:, :0].repeat(lab.shape[0] // B, 1, 1), lab)[:, -1]
    zeros = torch.zeros(B, device=device, dtype=sd)
    forced = 0 if prefix is None else prefix.shape[1]
    for i in range(N):
        cond, uncond = (h[:B], h[B:]) if guided else (h, None)
        if i < forced:
            y, x = torch.zeros(B, D, device=device, dtype=sd), prefix[:, i].to(dtype)
        elif anchor is not None:
            y_true, t = anchor[0][:, i].to(sd), anchor[1][:, i].to(sd)
            eps = noise.randn(*y_true.shape, dtype=sd) if anchor_noise is None else anchor_noise[:, i].to(sd)
            y0, t0 = t[:, None] * y_true + (1 - t[:, None]) * eps, t
        elif initial is not None:
            y0, t0 = initial[:, i].to(sd), zeros
        else:
            y0, t0 = noise.randn(B, D, dtype=sd) * settings.temperature, zeros
        if i >= forced:
            y = ode(cond, uncond, settings.guidance_at(i, g.num_tokens), y0, t0)
            x = net.to_pixels(y.to(dtype), cond)
        patches[:, i] = x
        states.append(y)
        hidden.append(cond)
        if i < N - 1:
            if use_cache:
                h = net.trunk.step(torch.cat([x, x]) if guided else x, cache)
            else:
                seen = patches[:, : i + 1]
                h = net.trunk(torch.cat([seen, seen]) if guided else seen, lab)[:, -1]
    return Rollout(patches, torch.stack(states, 1), torch.stack(hidden, 1))


def balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Class-balanced labels 0,0,...,1,1,... (per_class of each)."""
    return torch.arange(num_classes).repeat_interleave(per_class)
