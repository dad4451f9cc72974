"""The input-distribution gap: what the trunk sees at training time vs in a true sequential rollout.

For every AR input position i (patches 1..N-1; the last patch is never fed back), collect the inputs
under (a) teacher forcing, (b) pixel-space Gaussian noise (the pixel_noise construction), (c) the PRA
parallel construction D(t*z + (1-t)*eps, h_tf) (latent models), and (d) the model's own sequential
rollout at inference (the reference), all for the same images/labels and the given model weights.
Divergences of (a)-(c) from (d) are computed per position in one PCA basis fitted on (a).
"""
from __future__ import annotations

import numpy as np
import torch

from pra.ablate.divergence import PCABasis, bootstrap, gaussian_kl, knn_kl
from pra.config import ExperimentConfig
from pra.model.patches import patchify, to_unit
from pra.noise import Noise
from pra.objective import Objective, make_flow
from pra.runtime import generator
from pra.sampler import SamplerSettings, rollout

CONSTRUCTIONS = ("teacher_forcing", "pixel_noise", "pra")


@torch.no_grad()
def collect_inputs(net, cfg: ExperimentConfig, images_u8: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                   batch_size: int = 250) -> dict[str, np.ndarray]:
    """Trunk inputs [n, N, P] under every construction available for this model, and the rollout."""
    g = net.geometry
    device = next(net.parameters()).device
    noise = Noise(generator(seed, device))
    flow = make_flow(cfg.model, net.latent)
    settings = SamplerSettings.from_config(cfg.sample)
    pix = Objective("pixel_noise", cfg.model, cfg.method, latent=net.latent)
    pra = Objective("pra", cfg.model, cfg.method, latent=True) if net.latent else None
    out: dict[str, list] = {k: [] for k in (*CONSTRUCTIONS, "rollout")}
    for i in range(0, len(images_u8), batch_size):
        x = patchify(to_unit(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch_size])).to(device)),
                     g.patch_size)
        y = torch.as_tensor(labels[i:i + batch_size]).to(device)
        B, N, _ = x.shape
        out["teacher_forcing"].append(x)
        out["pixel_noise"].append(pix.build_inputs(net, x, y, None, noise))
        if pra is not None:
            z = net.encoder(x, pra.encoder_mask(B, N, noise))  # the training-time (masked) encoder
            out["pra"].append(pra.build_inputs(net, x, y, z, noise))
        out["rollout"].append(rollout(net, flow, y, settings, noise).patches)
    return {k: torch.cat(v).float().cpu().numpy() for k, v in out.items() if v}


def dequantize(inputs: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Add U(-1/255, 1/255) to every construction (one 8-bit step in [-1, 1] units).

    Real patches are quantised; the rollout's are continuous. Without this, exact ties among real
    patches (e.g. all-black corners) make the kNN distances zero and the estimate infinite.
    """
    rng = np.random.default_rng(seed)
    return {k: v + rng.uniform(-1 / 255, 1 / 255, v.shape) for k, v in inputs.items()}


def input_gap(inputs: dict[str, np.ndarray], *, pca_dim: int = 8, shrinkage: float = 0.05, knn_k: int = 5,
              bootstrap_reps: int = 20, seed: int = 0, dequantise: bool = True) -> dict:
    if dequantise:
        inputs = dequantize(inputs, seed)
    ref = inputs["rollout"]
    n, N, P = ref.shape
    positions = list(range(N - 1))  # inputs fed to the trunk
    basis = PCABasis(inputs["teacher_forcing"][:, positions].reshape(-1, P), pca_dim)
    proj = {k: np.stack([basis(v[:, i]) for i in positions], 1) for k, v in inputs.items()}
    result = {"positions": [i + 1 for i in positions], "constructions": {},
              "settings": {"pca_dim": pca_dim, "pca_fitted_on": "teacher-forced inputs, all positions pooled",
                           "pca_explained_variance": basis.explained, "covariance_shrinkage": shrinkage,
                           "knn_k": knn_k, "bootstrap_reps": bootstrap_reps, "images": n,
                           "dequantisation": "U(-1/255, 1/255) added to every construction" if dequantise else "none",
                           "reference": "the model's own sequential rollout (sampler settings of the experiment)"}}
    for name in CONSTRUCTIONS:
        if name not in proj:
            continue
        p, q = proj[name], proj["rollout"]
        gk = [gaussian_kl(p[:, j], q[:, j], shrinkage) for j in range(len(positions))]
        kk = [knn_kl(p[:, j], q[:, j], knn_k) for j in range(len(positions))]

        def mean_over_positions(fn):
            return lambda a, b: float(np.mean([fn(a[:, j], b[:, j]) for j in range(len(positions))]))

        result["constructions"][name] = {
            "gaussian_kl": gk, "knn_kl": kk, "mean_gaussian_kl": float(np.mean(gk)), "mean_knn_kl": float(np.mean(kk)),
            "ci_gaussian_kl": bootstrap(mean_over_positions(lambda a, b: gaussian_kl(a, b, shrinkage)), p, q,
                                        bootstrap_reps, seed),
            "ci_knn_kl": bootstrap(mean_over_positions(lambda a, b: knn_kl(a, b, knn_k)), p, q, bootstrap_reps, seed),
            "input_mse_to_clean": float(((inputs[name] - inputs["teacher_forcing"]) ** 2).mean()),
        }
    return result
