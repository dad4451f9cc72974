"""Error accumulation along the sequence.

Per AR position i, in one PCA basis fitted on real patches (all positions pooled):
* rollout: Frechet distance between the patches the model generates at i in a full rollout (its own
  prefix) and real patches at i;
* one step: the same distance when the model generates patch i from the *ground-truth* prefix
  (teacher-forced trunk, then the head and decoder).
The one-step curve is the single-step error; the gap between the curves is what accumulates.
"""
from __future__ import annotations

import numpy as np
import torch

from pra.ablate.divergence import PCABasis, frechet
from pra.config import ExperimentConfig
from pra.model.patches import patchify, to_unit
from pra.noise import Noise
from pra.objective import make_flow
from pra.runtime import generator
from pra.sampler import SamplerSettings


@torch.no_grad()
def one_step(net, cfg: ExperimentConfig, x: torch.Tensor, labels: torch.Tensor, noise: Noise) -> torch.Tensor:
    """Patch i generated from the true prefix x_<i, for every i at once: [B, N, P]."""
    flow = make_flow(cfg.model, net.latent)
    s = SamplerSettings.from_config(cfg.sample)
    B, N, P = x.shape
    h = net.trunk(x[:, :-1], labels)
    uncond, w = None, 1.0
    if s.cfg_scale != 1.0:
        uncond = net.trunk(x[:, :-1], torch.full_like(labels, net.trunk.null_label)).reshape(B * N, -1)
        w = torch.tensor([s.guidance_at(i, N) for i in range(N)], dtype=h.dtype, device=h.device).repeat(B)
    y = flow.sample(net.head, h.reshape(B * N, -1), steps=s.ode_steps, solver=s.solver, uncond=uncond,
                    cfg_scale=w, cfg_interval=s.cfg_interval, temperature=s.temperature, noise=noise)
    return net.to_pixels(y, h.reshape(B * N, -1)).reshape(B, N, P)


def error_accumulation(net, cfg: ExperimentConfig, real_u8: np.ndarray, real_labels: np.ndarray,
                       samples_u8: np.ndarray, *, pca_dim: int = 8, seed: int = 0, batch_size: int = 250) -> dict:
    g = net.geometry
    device = next(net.parameters()).device
    x = patchify(to_unit(torch.from_numpy(np.ascontiguousarray(real_u8))), g.patch_size)
    gen = patchify(to_unit(torch.from_numpy(np.ascontiguousarray(samples_u8))), g.patch_size).numpy()
    noise = Noise(generator(seed, device))
    y = torch.as_tensor(real_labels)
    step = torch.cat([one_step(net, cfg, x[i:i + batch_size].to(device), y[i:i + batch_size].to(device), noise).cpu()
                      for i in range(0, len(x), batch_size)]).float().numpy()
    real = x.numpy()
    N, P = real.shape[1], real.shape[2]
    basis = PCABasis(real.reshape(-1, P), pca_dim)
    fd_roll = [frechet(basis(gen[:, i]), basis(real[:, i])) for i in range(N)]
    fd_step = [frechet(basis(step[:, i]), basis(real[:, i])) for i in range(N)]
    return {"positions": list(range(1, N + 1)), "fd_rollout": fd_roll, "fd_one_step": fd_step,
            "mean_fd_rollout": float(np.mean(fd_roll)), "mean_fd_one_step": float(np.mean(fd_step)),
            "accumulated": float(np.mean(fd_roll) - np.mean(fd_step)),
            "settings": {"pca_dim": pca_dim, "pca_explained_variance": basis.explained,
                         "pca_fitted_on": "real patches, all positions pooled", "real_images": len(real),
                         "generated_images": len(gen)}}
