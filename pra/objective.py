"""Training objective per method: the flow-matching head loss on the trunk's states, the reconstruction and
moment losses of the latent methods. The inputs each method feeds the trunk are built in pra.inputs.
"""
from __future__ import annotations

import torch

from pra.config import MethodConfig, ModelConfig
from pra.config.sections import ANCHORED_METHODS
from pra.distributed import global_mean
from pra.flow import make_flow
from pra.inputs import TrunkInputs
from pra.model.network import PRANetwork
from pra.noise import Noise, as_noise


class Objective:
    def __init__(self, method: str, model: ModelConfig, settings: MethodConfig, latent: bool):
        if method in ANCHORED_METHODS and settings.perturbation_law != "interpolant":
            raise ValueError(f"method {method!r} starts its head ODE on the flow's path: method.perturbation_law "
                             f"must be 'interpolant', got {settings.perturbation_law!r}")
        self.method = method
        self.model = model
        self.settings = settings
        self.flow = make_flow(model, latent)
        self.inputs = TrunkInputs(method, settings, self.flow)

    def __call__(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, noise: Noise | torch.Generator):
        """x: clean patches [B, N, P] in [-1, 1]; labels [B]. Returns (loss, detached logs)."""
        noise = as_noise(noise)
        B, N, _ = x.shape
        drop = noise.rand(B) < self.model.class_dropout
        labels = torch.where(drop, torch.full_like(labels, net.trunk.null_label), labels)
        logs = {}
        if net.latent:
            z_rec, z = self.inputs.head_states(net, x, noise)
            target = z if self.settings.head_grad_to_encoder else z.detach()
            inputs, h_tf = self.inputs.build_with_context(net, x, labels, z.detach(), noise)
        else:
            z_rec, z, target = None, None, x
            inputs, h_tf = self.inputs.build_with_context(net, x, labels, None, noise)
        if h_tf is not None and self.settings.recon_context == "teacher_forced":
            h_tf = h_tf.clone()  # read after the next trunk call: never a buffer that call may reuse (CUDA graphs)
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
            recon = net.to_pixels(z_rec, self.reconstruction_context(net, x, labels, inputs, h, h_tf))
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

    def reconstruction_context(self, net: PRANetwork, x: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor,
                               h: torch.Tensor, h_tf: torch.Tensor | None) -> torch.Tensor | None:
        """The trunk states the reconstruction loss decodes with (no gradient into the trunk): 'own' = the trunk's
        pass over the inputs this method trains on; 'teacher_forced' = its pass over the clean patches, as for
        latent_tf (the same tensor there). The reconstruction loss trains the decoder and the encoder, so the
        setting moves both, and with them the renderings a method builds its inputs from."""
        if net.decoder.ctx_in is None:
            return None
        if self.settings.recon_context == "own" or inputs is x:
            return h.detach()
        if h_tf is None:  # the construction did not need the teacher-forced pass: one more, without gradient
            with torch.no_grad():
                h_tf = net.trunk(x[:, :-1], labels)
        return h_tf.detach()
