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
from pra.model.network import PRANetwork
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
    def encoder_mask(self, B: int, N: int, gen: torch.Generator, device) -> torch.Tensor:
        """Two-level masking: an example is selected with p_sample; inside it, tokens with p_token."""
        sel = torch.rand(B, generator=gen, device=device) < self.knobs.p_sample
        tok = torch.rand(B, N, generator=gen, device=device) < self.knobs.p_token
        return sel[:, None] & tok

    def perturbation_times(self, B: int, N: int, gen: torch.Generator, device) -> torch.Tensor:
        return self.knobs.t_min + (1 - self.knobs.t_min) * torch.rand(B, N, generator=gen, device=device)

    @torch.no_grad()
    def build_inputs(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, z: torch.Tensor | None,
                     gen: torch.Generator) -> torch.Tensor:
        """The patches the trunk is trained on, [B, N, P] (the last one is never fed)."""
        B, N, _ = x.shape
        m = self.method
        if m in ("pixel_tf", "latent_tf"):
            return x
        if m == "pixel_noise":
            sigma = self.knobs.pixel_noise_sigma * torch.rand(B, 1, 1, generator=gen, device=x.device)
            return x + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        if m == "pra":
            t = self.perturbation_times(B, N, gen, x.device).to(x.dtype)
            ctx = net.trunk(x[:, :-1], labels) if net.decoder.ctx_in is not None else None
            eps = torch.randn(z.shape, generator=gen, device=x.device, dtype=z.dtype)
            z_tilde = t[..., None] * z + (1 - t[..., None]) * eps
            return net.to_pixels(z_tilde, ctx)
        if m == "exact_rollout":
            anchor = None
            if self.knobs.rollout_anchor:
                anchor = (z, self.perturbation_times(B, N, gen, x.device).to(x.dtype))
            return rollout(net, self.flow, labels, self.rollout_settings, gen, anchor=anchor).patches
        raise ValueError(f"unknown method {m!r}")

    # -- the loss --------------------------------------------------------------------------------
    def __call__(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator):
        """x: clean patches [B, N, P] in [-1, 1]; labels [B]. Returns (loss, float logs)."""
        B, N, _ = x.shape
        drop = torch.rand(B, generator=gen, device=x.device) < self.model.class_dropout
        labels = torch.where(drop, torch.full_like(labels, net.trunk.null_label), labels)
        logs = {}
        if net.latent:
            z = net.encoder(x, self.encoder_mask(B, N, gen, x.device))
            target = z if self.knobs.head_grad_to_encoder else z.detach()
            inputs = self.build_inputs(net, x, labels, z.detach(), gen)
        else:
            z, target = None, x
            inputs = self.build_inputs(net, x, labels, None, gen)
        h = net.trunk(inputs[:, :-1], labels)  # [B, N, W]
        mul = self.model.head_batch_mul
        rows_y = target.reshape(B * N, -1).repeat(mul, 1)
        rows_h = h.reshape(B * N, -1).repeat(mul, 1)
        head_loss = self.flow.loss(net.head, rows_y, rows_h, gen).mean()
        loss = head_loss
        logs["loss_head"] = head_loss.detach()
        if net.latent:
            recon = net.to_pixels(z, h.detach())
            recon_loss = ((recon - x) ** 2).mean()
            zf = z.reshape(-1, z.shape[-1])
            moment = (zf.mean(0) ** 2).mean() + ((zf.var(0) - 1) ** 2).mean()
            loss = loss + self.knobs.recon_weight * recon_loss + self.knobs.moment_weight * moment
            logs["loss_recon"] = recon_loss.detach()
            logs["loss_moment"] = moment.detach()
        logs["input_mse"] = ((inputs - x) ** 2).mean().detach()
        logs["loss"] = loss.detach()
        return loss, logs
