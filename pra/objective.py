"""Training objective per method: how the trunk's inputs are built, and the losses (DESIGN section 2).

| method         | trunk inputs                                       | head target |
| pixel_tf       | clean patches                                      | patch       |
| pixel_noise    | clean patches + Gaussian noise                     | patch       |
| latent_tf      | clean patches                                      | z           |
| pra            | D(t*sg(z) + (1-t)*eps, h_tf), built per position   | z           |
| exact_rollout  | a sequential rollout of the current model          | z           |
"""
from __future__ import annotations

import torch

from pra.config import MethodConfig, ModelConfig
from pra.flow import Flow
from pra.distributed import global_mean
from pra.model.network import PRANetwork
from pra.noise import Noise, as_noise
from pra.sampler import SamplerSettings, rollout


def make_flow(model: ModelConfig, latent: bool) -> Flow:
    pred = model.head_prediction if model.head_prediction != "auto" else ("v" if latent else "x")
    return Flow(prediction=pred, t_sampler=model.t_sampler, t_mean=model.t_mean, t_std=model.t_std)


class Objective:
    def __init__(self, method: str, model: ModelConfig, knobs: MethodConfig, latent: bool):
        self.method = method
        self.model = model
        self.knobs = knobs
        self.flow = make_flow(model, latent)
        # exact_rollout runs the inference sampler (without guidance) on the current weights
        self.rollout_settings = SamplerSettings(ode_steps=knobs.rollout_ode_steps, solver=knobs.rollout_solver,
                                                cfg_scale=1.0, temperature=1.0)

    # -- pieces, public so that the diagnostics use exactly the training constructions -----------
    def encoder_mask(self, B: int, N: int, noise: Noise) -> torch.Tensor:
        """Two-level masking: an example is selected with p_sample; inside it, tokens with p_token."""
        sel = noise.rand(B) < self.knobs.p_sample
        tok = noise.rand(B, N) < self.knobs.p_token
        return sel[:, None] & tok

    def perturbation_times(self, B: int, N: int, noise: Noise) -> torch.Tensor:
        return self.knobs.t_min + (1 - self.knobs.t_min) * noise.rand(B, N)

    @torch.no_grad()
    def build_inputs(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, z: torch.Tensor | None,
                     noise: Noise | torch.Generator) -> torch.Tensor:
        """The patches the trunk is trained on, [B, N, P] (the last one is never fed)."""
        noise = as_noise(noise)
        B, N, _ = x.shape
        m = self.method
        if m in ("pixel_tf", "latent_tf"):
            return x
        if m == "pixel_noise":
            sigma = self.knobs.pixel_noise_sigma * noise.rand(B, 1, 1, dtype=x.dtype)
            return x + sigma * noise.randn(*x.shape, dtype=x.dtype)
        if m == "pra":
            t = self.perturbation_times(B, N, noise).to(x.dtype)
            ctx = net.trunk(x[:, :-1], labels) if net.decoder.ctx_in is not None else None
            eps = noise.randn(*z.shape, dtype=z.dtype)
            z_tilde = t[..., None] * z + (1 - t[..., None]) * eps
            return net.to_pixels(z_tilde, ctx)
        if m == "exact_rollout":
            anchor = None
            if self.knobs.rollout_anchor:
                anchor = (z, self.perturbation_times(B, N, noise).to(x.dtype))
            return rollout(net, self.flow, labels, self.rollout_settings, noise, anchor=anchor).patches
        raise ValueError(f"unknown method {m!r}")

    # -- the loss --------------------------------------------------------------------------------
    def __call__(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, noise: Noise | torch.Generator):
        """x: clean patches [B, N, P] in [-1, 1]; labels [B]. Returns (loss, detached logs)."""
        noise = as_noise(noise)
        B, N, _ = x.shape
        drop = noise.rand(B) < self.model.class_dropout
        labels = torch.where(drop, torch.full_like(labels, net.trunk.null_label), labels)
        logs = {}
        if net.latent:
            z = net.encoder(x, self.encoder_mask(B, N, noise))
            target = z if self.knobs.head_grad_to_encoder else z.detach()
            inputs = self.build_inputs(net, x, labels, z.detach(), noise)
        else:
            z, target = None, x
            inputs = self.build_inputs(net, x, labels, None, noise)
        h = net.trunk(inputs[:, :-1], labels)  # [B, N, W]
        # head rows: every token `mul` times, each with its own time and noise
        mul, D = self.model.head_batch_mul, target.shape[-1]
        eps = noise.randn(mul, B, N, D, batch_dim=1, dtype=target.dtype)
        t = self.flow.sample_t(noise, mul, B, N, batch_dim=1)
        rows_y = target.unsqueeze(0).expand(mul, -1, -1, -1).reshape(-1, D)
        rows_h = h.unsqueeze(0).expand(mul, -1, -1, -1).reshape(mul * B * N, -1)
        head_loss = self.flow.loss(net.head, rows_y, rows_h, eps.reshape(-1, D), t.reshape(-1)).mean()
        loss = head_loss
        logs["loss_head"] = head_loss.detach()
        if net.latent:
            recon = net.to_pixels(z, h.detach())
            recon_loss = ((recon - x) ** 2).mean()
            # batch moments over the global batch (all ranks), so data parallelism changes nothing
            zf = z.reshape(-1, z.shape[-1])
            mean = global_mean(zf)
            var = global_mean(zf ** 2) - mean ** 2
            moment = (mean ** 2).mean() + ((var - 1) ** 2).mean()
            loss = loss + self.knobs.recon_weight * recon_loss + self.knobs.moment_weight * moment
            logs["loss_recon"] = recon_loss.detach()
            logs["loss_moment"] = moment.detach()
        logs["input_mse"] = ((inputs - x) ** 2).mean().detach()
        logs["loss"] = loss.detach()
        return loss, logs
