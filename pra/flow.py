"""Flow matching for the per-token head: time law, velocity loss, and the ODE sampler with CFG.

Convention: y_t = t * y + (1 - t) * eps, t = 0 is noise and t = 1 is data, velocity v = y - eps.
With x-prediction the head outputs y_hat and v_hat = (y_hat - y_t) / (1 - t) (JiT); the loss is
always on the velocity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pra.model.head import FlowHead
from pra.noise import Noise, as_noise


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the head ODE integrates in for a network of `dtype`: fp32 for bf16/fp16/fp32, fp64 for fp64."""
    return torch.promote_types(dtype, torch.float32)


def make_flow(model, latent: bool) -> "Flow":
    """The flow of a network's head from the model config (`ModelConfig`): x-prediction for pixel heads
    and v-prediction for latent heads unless `head_prediction` says otherwise."""
    pred = model.head_prediction if model.head_prediction != "auto" else ("v" if latent else "x")
    return Flow(prediction=pred, t_sampler=model.t_sampler, t_mean=model.t_mean, t_std=model.t_std)


@dataclass(frozen=True)
class Flow:
    prediction: str = "v"          # "v" or "x"
    t_sampler: str = "logit_normal"
    t_mean: float = 0.0
    t_std: float = 1.0
    x_pred_eps: float = 0.05       # clamp of (1 - t) for x-prediction, as in JiT

    def sample_t(self, noise: Noise, *shape, batch_dim: int = 0) -> torch.Tensor:
        if self.t_sampler == "uniform":
            return noise.rand(*shape, batch_dim=batch_dim)
        return torch.sigmoid(noise.randn(*shape, batch_dim=batch_dim) * self.t_std + self.t_mean)

    def velocity(self, head: FlowHead, y_t, t, cond):
        """The head's velocity at (y_t, t) given cond, in y_t's dtype; the head runs in its weights' dtype
        (bf16 inference weights under an fp32 ODE state: the casts are the only difference)."""
        w = head.y_in.weight.dtype
        out = head(y_t.to(w), t, cond.to(w)).to(y_t.dtype)
        if self.prediction == "x":
            return (out - y_t) / (1 - t).clamp_min(self.x_pred_eps)[:, None]
        return out

    def loss(self, head: FlowHead, y: torch.Tensor, cond: torch.Tensor, eps: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """Per-row velocity loss for targets y [R, D] given conditions [R, C], noise eps [R, D] and
        times t [R] (drawn by the caller, see pra.noise); returns [R]."""
        t = t.to(y.dtype)
        y_t = t[:, None] * y + (1 - t[:, None]) * eps
        v = self.velocity(head, y_t, t, cond)
        return ((v - (y - eps)) ** 2).mean(dim=-1)

    @torch.no_grad()
    def sample(self, head: FlowHead, cond: torch.Tensor, *, steps: int, solver: str = "heun",
               uncond: torch.Tensor | None = None, cfg_scale: float | torch.Tensor = 1.0,
               cfg_interval: tuple[float, float] = (0.0, 1.0), temperature: float = 1.0,
               noise: Noise | torch.Generator | None = None, y_start: torch.Tensor | None = None,
               t_start: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate the ODE from t_start (default 0, y ~ temperature * N(0, I)) to t = 1.

        cfg_scale may be a tensor (per row, or a 0-d buffer a CUDA graph reads): then guidance is always on;
        guidance v_u + w (v_c - v_u) is applied while t lies in cfg_interval. With y_start/t_start the
        integration starts mid-way (per row). The state y is integrated in at least fp32 (bf16 heads too).
        The last Heun step is an Euler step (its corrector would evaluate at t = 1). No step reads a
        tensor back to the host, so the whole solve can be captured as one CUDA graph.
        """
        R, device = cond.shape[0], cond.device
        dim = head.out.out_features
        state = state_dtype(cond.dtype)
        if y_start is None:
            y = as_noise(noise).randn(R, dim, dtype=state) * temperature
            t0 = torch.zeros(R, device=device, dtype=state)
        else:
            y, t0 = y_start.clone(), t_start.to(y_start.dtype)
        guided = uncond is not None and (torch.is_tensor(cfg_scale) or cfg_scale != 1)
        if guided:  # (a fill, not a host-to-device copy: allowed while a CUDA graph is captured)
            w = (cfg_scale.to(y.dtype) if torch.is_tensor(cfg_scale)
                 else torch.full((), float(cfg_scale), dtype=y.dtype, device=device)).expand(R)
        lo, hi = cfg_interval

        def vel(y_, t_):
            if not guided:
                return self.velocity(head, y_, t_, cond)
            v = self.velocity(head, torch.cat([y_, y_]), torch.cat([t_, t_]), torch.cat([cond, uncond]))
            v_c, v_u = v.chunk(2)
            inside = ((t_ >= lo) & (t_ <= hi)).to(v.dtype)
            w_t = 1 + (w - 1) * inside
            return v_u + w_t[:, None] * (v_c - v_u)

        for k in range(steps):
            t_a = t0 + (1 - t0) * (k / steps)
            t_b = t0 + (1 - t0) * ((k + 1) / steps)
            dt = (t_b - t_a)[:, None]
            v_a = vel(y, t_a)
            if solver == "heun" and k < steps - 1:
                y_e = y + dt * v_a
                y = y + dt * 0.5 * (v_a + vel(y_e, t_b))
            else:
                y = y + dt * v_a
        return y
