"""Training objective per method: how the trunk's inputs are built, and the losses.

| method             | trunk inputs x~_i (position i, fed to predict token i+1)        | head target |
| pixel_tf           | clean patches x_i                                               | patch       |
| pixel_noise        | x_i + sigma * n, sigma ~ U(0, pixel_noise_sigma) per example    | patch       |
| latent_tf          | clean patches x_i                                               | z           |
| latent_pixel_noise | as pixel_noise                                                  | z           |
| pra                | D(z~_i, h_i(clean x_<i)), all positions in one parallel pass    | z           |
| pra_sequential     | D(z~_i, h_i(x~_<i)), h from the model's own pass over the       | z           |
|                    | inputs built so far (one position at a time)                    |             |
| anchored_rollout   | D(ODE(z~_i -> 1 | h_i(x~_<i)), h_i): the sampler, each head ODE  | z           |
|                    | started from the noised true state                              |             |
| free_rollout       | the inference sampler from pure noise (no ground truth)         | z           |

z~_i = t_i * sg(z_i) + (1 - t_i) * eps_i with t_i ~ U(t_min, 1): pra and pra_sequential draw the same
perturbation and differ only in the context the decoder sees (teacher-forced, built in parallel, vs the
model's own sequential pass), so comparing them isolates parallel vs sequential construction.
"""
from __future__ import annotations

import torch

from pra.config import MethodConfig, ModelConfig
from pra.distributed import global_mean
from pra.flow import make_flow
from pra.model.network import PRANetwork
from pra.noise import Noise, as_noise
from pra.sampler import SamplerSettings, rollout


class Objective:
    def __init__(self, method: str, model: ModelConfig, settings: MethodConfig, latent: bool):
        self.method = method
        self.model = model
        self.settings = settings
        self.flow = make_flow(model, latent)
        # the rollout methods run the inference sampler (without guidance) on the current weights
        self.rollout_settings = SamplerSettings(ode_steps=settings.rollout_ode_steps, solver=settings.rollout_solver,
                                                cfg_scale=1.0, temperature=1.0)

    # -- pieces, public so that the diagnostics use exactly the training constructions -----------
    def encoder_mask(self, B: int, N: int, noise: Noise) -> torch.Tensor:
        """Two-level masking: an example is selected with p_sample; inside it, tokens with p_token."""
        sel = noise.rand(B) < self.settings.p_sample
        tok = noise.rand(B, N) < self.settings.p_token
        return sel[:, None] & tok

    def perturbation_times(self, B: int, N: int, noise: Noise) -> torch.Tensor:
        return self.settings.t_min + (1 - self.settings.t_min) * noise.rand(B, N)

    def perturbed_states(self, z: torch.Tensor, noise: Noise) -> torch.Tensor:
        """z~ = t * z + (1 - t) * eps, t ~ U(t_min, 1) per position: PRA's perturbation law."""
        B, N, _ = z.shape
        t = self.perturbation_times(B, N, noise).to(z.dtype)
        eps = noise.randn(*z.shape, dtype=z.dtype)
        return t[..., None] * z + (1 - t[..., None]) * eps

    def pixel_noised(self, x: torch.Tensor, noise: Noise) -> torch.Tensor:
        B = x.shape[0]
        sigma = self.settings.pixel_noise_sigma * noise.rand(B, 1, 1, dtype=x.dtype)
        return x + sigma * noise.randn(*x.shape, dtype=x.dtype)

    @torch.no_grad()
    def build_inputs(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, z: torch.Tensor | None,
                     noise: Noise | torch.Generator) -> torch.Tensor:
        """The patches the trunk is trained on, [B, N, P] (the last one is never fed)."""
        noise = as_noise(noise)
        B, N, _ = x.shape
        m = self.method
        if m in ("pixel_tf", "latent_tf"):
            return x
        if m in ("pixel_noise", "latent_pixel_noise"):
            return self.pixel_noised(x, noise)
        if m == "pra":
            t = self.perturbation_times(B, N, noise).to(x.dtype)  # (draw order kept: t, context, eps)
            ctx = net.trunk(x[:, :-1], labels) if net.decoder.ctx_in is not None else None
            eps = noise.randn(*z.shape, dtype=z.dtype)
            z_tilde = t[..., None] * z + (1 - t[..., None]) * eps
            return net.to_pixels(z_tilde, ctx)
        if m == "pra_sequential":
            return self.sequential_inputs(net, self.perturbed_states(z, noise), labels)
        if m == "anchored_rollout":
            anchor = (z, self.perturbation_times(B, N, noise).to(x.dtype))
            return rollout(net, self.flow, labels, self.rollout_settings, noise, anchor=anchor).patches
        if m == "free_rollout":
            return rollout(net, self.flow, labels, self.rollout_settings, noise).patches
        raise ValueError(f"unknown method {m!r}")

    @staticmethod
    @torch.no_grad()
    def sequential_inputs(net: PRANetwork, z_tilde: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """x~_i = D(z~_i, h_i) with h_i from the trunk's causal pass over x~_<i (KV-cached, one position at a
        time): the sequential twin of PRA's parallel construction."""
        B, N, _ = z_tilde.shape
        dtype = z_tilde.dtype
        cache = net.trunk.new_cache(B, z_tilde.device, dtype)
        h = net.trunk.prefill(labels, cache)
        out = []
        for i in range(N):
            x_i = net.to_pixels(z_tilde[:, i], h)
            out.append(x_i)
            if i < N - 1:
                h = net.trunk.step(x_i, cache)
        return torch.stack(out, 1)

    def head_states(self, net: PRANetwork, x: torch.Tensor, noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        """(z of the reconstruction path, z the head models). The reconstruction path is the masked encoder
        pass; with head_target 'unmasked' the head's target (and PRA's inputs) come from a second pass
        without masking, so that no target is the code of a patch the encoder did not see."""
        B, N, _ = x.shape
        mask = self.encoder_mask(B, N, noise)
        z_rec = net.encoder(x, mask)
        if self.settings.head_target == "masked" or not bool(mask.any()):
            return z_rec, z_rec
        return z_rec, net.encoder(x)

    # -- the loss --------------------------------------------------------------------------------
    def __call__(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, noise: Noise | torch.Generator):
        """x: clean patches [B, N, P] in [-1, 1]; labels [B]. Returns (loss, detached logs)."""
        noise = as_noise(noise)
        B, N, _ = x.shape
        drop = noise.rand(B) < self.model.class_dropout
        labels = torch.where(drop, torch.full_like(labels, net.trunk.null_label), labels)
        logs = {}
        if net.latent:
            z_rec, z = self.head_states(net, x, noise)
            target = z if self.settings.head_grad_to_encoder else z.detach()
            inputs = self.build_inputs(net, x, labels, z.detach(), noise)
        else:
            z_rec, z, target = None, None, x
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
            recon = net.to_pixels(z_rec, h.detach())
            recon_loss = ((recon - x) ** 2).mean()
            # batch moments of the states the head models, over the global batch (all ranks), so data
            # parallelism changes nothing
            zf = z.reshape(-1, z.shape[-1])
            mean = global_mean(zf)
            var = global_mean(zf ** 2) - mean ** 2
            moment = (mean ** 2).mean() + ((var - 1) ** 2).mean()
            loss = loss + self.settings.recon_weight * recon_loss + self.settings.moment_weight * moment
            logs["loss_recon"] = recon_loss.detach()
            logs["loss_moment"] = moment.detach()
        logs["input_mse"] = ((inputs - x) ** 2).mean().detach()
        logs["loss"] = loss.detach()
        return loss, logs
