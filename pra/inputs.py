"""How the trunk's training inputs are built, per method (the table below), and the states they start from.

One module for the constructions, so that training (pra.objective) and the diagnostics (pra.diagnostics)
build exactly the same inputs from the same noise stream.

| method             | trunk inputs x~_i (position i, fed to predict token i+1)        | head target |
| pixel_tf           | clean patches x_i                                               | patch       |
| pixel_noise        | x_i + sigma * n, sigma ~ U(0, pixel_noise_sigma) per example    | patch       |
| latent_tf          | clean patches x_i                                               | z           |
| latent_pixel_noise | as pixel_noise                                                  | z           |
| pra                | D(z~_i, h_i(clean x_<i)), all positions in one parallel pass    | z           |
| energy_matched     | r_i + |D(z~_i, h_i) - r_i| u_i/|u_i|, r_i = D(z_i, h_i), u_i ~   | z           |
|                    | N(0, I): PRA's per-token error size in an isotropic direction   |             |
| pra_sequential     | D(z~_i, h_i(x~_<i)), h from the model's own pass over the       | z           |
|                    | inputs built so far (one position at a time)                    |             |
| parallel_anchored  | D(ODE(z~_i -> 1 | h_i(clean x_<i)), h_i): PRA's context, the      | z           |
|                    | sampler's state (all positions in one pass)                     |             |
| anchored_rollout   | D(ODE(z~_i -> 1 | h_i(x~_<i)), h_i): the sampler, each head ODE  | z           |
|                    | started from the noised true state                              |             |
| free_rollout       | the inference sampler from pure noise (no ground truth)         | z           |

z~_i = t_i * sg(z_i) + (1 - t_i) * eps_i with t_i ~ U(t_min, 1) (`method.perturbation_law`: this interpolant, or
t_i * z_i + sqrt(1 - t_i^2) * eps_i, or z_i + (1 - t_i) * eps_i; the anchored methods start their head ODE on
the flow's path, the interpolant, whatever the law): pra and pra_sequential draw the same
perturbation and differ only in the context the decoder sees (teacher-forced, built in parallel, vs the
model's own sequential pass), so comparing them isolates parallel vs sequential construction. The 2x2
{noised state z~, head ODE from z~} x {teacher-forced, own context} is {pra, parallel_anchored, pra_sequential,
anchored_rollout}; energy_matched keeps PRA's error size per token and drops its shape. At t_min = 1 pra is
the reconstruction-only control (the decoder's rendering of the true state, no perturbation).
"""
from __future__ import annotations

import torch

from pra.config import MethodConfig
from pra.flow import Flow
from pra.model.network import PRANetwork
from pra.noise import Noise, as_noise
from pra.rollout import SamplerSettings, rollout


class TrunkInputs:
    def __init__(self, method: str, settings: MethodConfig, flow: Flow):
        self.method = method
        self.settings = settings
        self.flow = flow
        # the rollout methods run the inference sampler (without guidance) on the current weights
        self.rollout_settings = SamplerSettings(ode_steps=settings.rollout_ode_steps, solver=settings.rollout_solver,
                                                cfg_scale=1.0, temperature=1.0)

    def encoder_mask(self, B: int, N: int, noise: Noise) -> torch.Tensor:
        """Two-level masking: an example is selected with p_sample; inside it, tokens with p_token."""
        sel = noise.rand(B) < self.settings.p_sample
        tok = noise.rand(B, N) < self.settings.p_token
        return sel[:, None] & tok

    def perturbation_times(self, B: int, N: int, noise: Noise) -> torch.Tensor:
        return self.settings.t_min + (1 - self.settings.t_min) * noise.rand(B, N)

    def perturb(self, z: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z~ from z [B, N, D], t [B, N] and eps [B, N, D] by `method.perturbation_law` (z itself at t = 1)."""
        law, t = self.settings.perturbation_law, t[..., None]
        if law == "interpolant":
            return t * z + (1 - t) * eps
        if law == "variance_preserving":
            return t * z + (1 - t * t).clamp_min(0).sqrt() * eps
        if law == "additive":
            return z + (1 - t) * eps
        raise ValueError(f"unknown perturbation law {law!r}")

    def perturbed_states(self, z: torch.Tensor, noise: Noise) -> torch.Tensor:
        """PRA's perturbed states z~, t ~ U(t_min, 1) per position (draw order: t, then eps)."""
        B, N, _ = z.shape
        t = self.perturbation_times(B, N, noise).to(z.dtype)
        eps = noise.randn(*z.shape, dtype=z.dtype)
        return self.perturb(z, t, eps)

    def pixel_noised(self, x: torch.Tensor, noise: Noise) -> torch.Tensor:
        B = x.shape[0]
        sigma = self.settings.pixel_noise_sigma * noise.rand(B, 1, 1, dtype=x.dtype)
        return x + sigma * noise.randn(*x.shape, dtype=x.dtype)

    def build(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, z: torch.Tensor | None,
              noise: Noise | torch.Generator) -> torch.Tensor:
        """The patches the trunk is trained on, [B, N, P] (the last one is never fed)."""
        return self.build_with_context(net, x, labels, z, noise)[0]

    @torch.no_grad()
    def build_with_context(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, z: torch.Tensor | None,
                           noise: Noise | torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the trunk's training inputs [B, N, P], the teacher-forced trunk states h(clean x_<i) [B, N, W] where
        the construction computed them, else None)."""
        noise = as_noise(noise)
        B, N, _ = x.shape
        m = self.method
        if m in ("pixel_tf", "latent_tf"):
            return x, None
        if m in ("pixel_noise", "latent_pixel_noise"):
            return self.pixel_noised(x, noise), None
        if m in ("pra", "energy_matched", "parallel_anchored"):
            t = self.perturbation_times(B, N, noise).to(x.dtype)  # (draw order kept: t, context, eps)
            ctx = net.trunk(x[:, :-1], labels) if (net.decoder.ctx_in is not None or m == "parallel_anchored") \
                else None
            eps = noise.randn(*z.shape, dtype=z.dtype)
            z_tilde = self.perturb(z, t, eps) if m != "parallel_anchored" else None
            if m == "pra":
                return net.to_pixels(z_tilde, ctx), ctx
            if m == "energy_matched":
                return self.energy_matched(net.to_pixels(z, ctx), net.to_pixels(z_tilde, ctx), noise), ctx
            return net.to_pixels(self.anchored_states(net, z, t, eps, ctx), ctx), ctx
        if m == "pra_sequential":
            return self.sequential(net, self.perturbed_states(z, noise), labels), None
        if m == "anchored_rollout":
            anchor = (z, self.perturbation_times(B, N, noise).to(x.dtype))
            return rollout(net, self.flow, labels, self.rollout_settings, noise, anchor=anchor).patches, None
        if m == "free_rollout":
            return rollout(net, self.flow, labels, self.rollout_settings, noise).patches, None
        raise ValueError(f"unknown method {m!r}")

    @staticmethod
    def energy_matched(rendered: torch.Tensor, perturbed: torch.Tensor, noise: Noise) -> torch.Tensor:
        """r + |p - r| u / |u| per example and token (r: the rendering of the true state, p: PRA's input,
        u ~ N(0, I)): the same error size as PRA's, in a direction that carries no decoder structure."""
        u = noise.randn(*rendered.shape, dtype=rendered.dtype)
        size = (perturbed - rendered).norm(dim=-1, keepdim=True)
        return rendered + size * u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def anchored_states(self, net: PRANetwork, z: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                        ctx: torch.Tensor) -> torch.Tensor:
        """The head ODE of every position from its noised true state t*z + (1-t)*eps at time t to 1, given the
        teacher-forced trunk states ctx [B, N, W], in one batched solve (the training-time rollout's solver and
        steps, no guidance)."""
        B, N, D = z.shape
        s = self.rollout_settings
        y0 = (t[..., None] * z + (1 - t[..., None]) * eps).reshape(B * N, D)
        y = self.flow.sample(net.head, ctx.reshape(B * N, -1), steps=s.ode_steps, solver=s.solver,
                             y_start=y0, t_start=t.reshape(B * N))
        return y.reshape(B, N, D).to(z.dtype)

    @staticmethod
    @torch.no_grad()
    def sequential(net: PRANetwork, z_tilde: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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
