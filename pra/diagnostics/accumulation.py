"""Error accumulation along the sequence, on held-out images.

The val split is cut once (fixed seed) into two disjoint halves: A gives the labels and the
ground-truth prefixes, B is the reference that every generated set is compared with, so no generated
patch is ever compared with the image it was conditioned on. Per AR position i, in a fixed PCA basis
fitted on train patches:
* own prefix: the Frechet distance between patch i of the model's rollouts (labels of A) and real
  patches i of B;
* true prefix: the same distance for patch i generated in one step from A's ground-truth prefix x_<i;
* floor: the distance between real patches i of A and of B (real vs real at the same sample size).
Both generators start every head ODE from the same noise (paired), and both outputs are rounded to
the 8-bit grid, the form real patches and saved samples have. The gap "own prefix minus true prefix"
is the error that the model's own prefix adds; the "excess" of each curve is its distance minus the
floor. The differences' means over positions get subsampling intervals (rows of A jointly, so the
pairing is kept); the raw distances, plug-in estimates biased upwards at small n, are shown as points.
"""
from __future__ import annotations

import numpy as np
import torch

from pra.config import ExperimentConfig
from pra.diagnostics import estimators as est
from pra.model.patches import image_patches, on_8bit_grid
from pra.flow import make_flow
from pra.noise import Noise
from pra.runtime import generator
from pra.rollout import SamplerSettings, rollout


@torch.no_grad()
def one_step(net, cfg: ExperimentConfig, x: torch.Tensor, labels: torch.Tensor, initial: torch.Tensor,
             noise: Noise) -> torch.Tensor:
    """Patch i generated from the true prefix x_<i, for every i at once: [B, N, P]; the head ODE of
    position i starts from initial[:, i]."""
    flow = make_flow(cfg.model, net.latent)
    s = SamplerSettings.from_config(cfg.sample)
    B, N, P = x.shape
    h = net.trunk(x[:, :-1], labels)
    uncond, w = None, 1.0
    if s.cfg_scale != 1.0:
        uncond = net.trunk(x[:, :-1], torch.full_like(labels, net.trunk.null_label)).reshape(B * N, -1)
        w = torch.tensor([s.guidance_at(i, N) for i in range(N)], dtype=h.dtype, device=h.device).repeat(B)
    y = flow.sample(net.head, h.reshape(B * N, -1), steps=s.ode_steps, solver=s.solver, uncond=uncond,
                    cfg_scale=w, cfg_interval=s.cfg_interval, temperature=s.temperature, noise=noise,
                    y_start=initial.reshape(B * N, -1), t_start=torch.zeros(B * N, device=h.device, dtype=h.dtype))
    return net.to_pixels(y, h.reshape(B * N, -1)).reshape(B, N, P)


@torch.no_grad()
def generate(net, cfg: ExperimentConfig, images_u8: np.ndarray, labels: np.ndarray, *, seed: int,
             batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(own-prefix rollouts, true-prefix one-step patches) for these images' labels and prefixes, paired
    by the head's starting noise; both on the 8-bit grid. [n, N, P] each."""
    g = net.geometry
    device = next(net.parameters()).device
    noise = Noise(generator(seed, device))
    flow = make_flow(cfg.model, net.latent)
    s = SamplerSettings.from_config(cfg.sample)
    D = net.head.out.out_features
    roll, step = [], []
    for i in range(0, len(images_u8), batch_size):
        x = image_patches(images_u8[i:i + batch_size], g.patch_size, device)
        y = torch.as_tensor(labels[i:i + batch_size]).to(device)
        init = noise.randn(x.shape[0], g.num_tokens, D) * s.temperature
        roll.append(on_8bit_grid(rollout(net, flow, y, s, noise, initial=init).patches))
        step.append(on_8bit_grid(one_step(net, cfg, x, y, init, noise)))
    return torch.cat(roll).float().cpu().numpy(), torch.cat(step).float().cpu().numpy()


DIFFERENCES = ("accumulated", "excess_own_prefix", "excess_true_prefix")


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2: 2 * (n // 2)])


def curves(real_a: np.ndarray, real_b: np.ndarray, own: np.ndarray, true_prefix: np.ndarray, basis,
           *, subsamples: int = 100, seed: int = 0) -> dict:
    """Per-position distances and their means with intervals; every array is [n, N, P] (A-side rows paired)."""
    rng = np.random.default_rng(seed)
    n, N, _ = real_a.shape
    proj = {k: np.stack([basis(v[:, i]) for i in range(N)], 1)
            for k, v in (("a", real_a), ("b", real_b), ("own", own), ("true", true_prefix))}

    def distances(ia, ib):
        fd = {k: np.array([est.frechet(proj[k][ia, i], proj["b"][ib, i]) for i in range(N)])
              for k in ("own", "true", "a")}
        return {"own_prefix": fd["own"], "true_prefix": fd["true"], "floor": fd["a"],
                "accumulated": fd["own"] - fd["true"], "excess_own_prefix": fd["own"] - fd["a"],
                "excess_true_prefix": fd["true"] - fd["a"]}

    all_a, all_b = np.arange(n), np.arange(len(real_b))
    full = distances(all_a, all_b)
    b_a, b_b = est.subsample_sizes(n), est.subsample_sizes(len(real_b))
    subs = [distances(np.sort(rng.choice(n, b_a, replace=False)), np.sort(rng.choice(len(real_b), b_b, replace=False)))
            for _ in range(subsamples)]
    out = {"positions": list(range(1, N + 1))}
    for k, v in full.items():
        out[k] = v.tolist()
        out[f"mean_{k}"] = float(v.mean())
        if k in DIFFERENCES:  # a plug-in FD is biased upwards by an amount that depends on n; differences
            # at equal sample sizes are not, so only they get a (subsampling) interval
            out[f"ci_{k}"] = est.subsample_interval(float(v.mean()), np.array([s[k].mean() for s in subs]), n, b_a)
    return out


def error_accumulation(net, cfg: ExperimentConfig, val_u8: np.ndarray, val_labels: np.ndarray,
                       train_u8: np.ndarray, *, pca_dim: int = 8, subsamples: int = 100, seed: int = 0) -> dict:
    g = net.geometry
    ia, ib = halves(len(val_u8), seed)
    own, true_prefix = generate(net, cfg, val_u8[ia], val_labels[ia], seed=seed)
    real = image_patches(val_u8, g.patch_size, "cpu").float().numpy()
    train = image_patches(train_u8, g.patch_size, "cpu").float().numpy()
    basis = est.PCABasis(train.reshape(-1, train.shape[-1]), pca_dim)
    res = curves(real[ia], real[ib], own, true_prefix, basis, subsamples=subsamples, seed=seed)
    res["settings"] = {"pca_dim": pca_dim, "pca_explained_variance": basis.explained,
                       "pca_fitted_on": f"patches of {len(train_u8)} train images, all positions pooled",
                       "split": "val (held out), two disjoint halves: A conditions, B is the reference",
                       "images_a": int(len(ia)), "images_b": int(len(ib)), "subsamples": subsamples,
                       "subsample_fraction": 0.5, "form": "generated patches rounded to the 8-bit grid, as real",
                       "pairing": "own-prefix and true-prefix generation share each position's head noise"}
    return res
