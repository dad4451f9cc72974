"""The approximation error itself: how far PRA's parallel inputs lie from the sequential rollout's.

On held-out images, with one draw of (t_i, eps_i) per image and position shared by every construction
(t_i ~ U(method.t_min, 1), eps_i ~ N(0, I), z the encoder's code of the clean patches):

  PRA        x~_i = D(z~_i, h_i(x_<i))            z~_i = t_i z_i + (1 - t_i) eps_i (or method.perturbation_law's
                                                  other laws); the clean prefix's context
  twin       x'_i = D(z~_i, h_i(x'_<i))           the same z~_i; the context of its own earlier inputs
  anchored   x^_i = D(y_i, h_i(x^_<i))            y_i: the head ODE from t_i z_i + (1 - t_i) eps_i (z~_i under
                                                  the interpolant) at time t_i to 1, conditioned on h_i of the
                                                  rollout's own earlier patches (the sampler, anchored)

Per AR position i the instrument reports the mean distance (Euclidean, [-1, 1] pixels) of PRA's and the
twin's inputs to the anchored rollout's, and the anchored rollout's own distance to the true patch; the
approximation error is their ratio (a ratio of means over images): how far the cheap construction is from
the sequential one, in units of how far the sequential one is from the data. Intervals come from subsets
of half the images without replacement (rescaled, as in pra.diagnostics.estimators), the images kept
jointly across positions and constructions, so the comparison stays paired.

Positions are summarised over the content positions only: those where at least `content_share` of the
real images have ink (a pixel above -1 + ink_level, in [-1, 1] units, where -1 is the black background). The rule is fixed from real data before anything generated
is looked at, and stated in the output; every position is also reported.

Known answers (tests/test_approximation.py): with t_min = 1 there is nothing to integrate, so the twin's
inputs equal the anchored rollout's exactly (error 0); with a decoder that ignores its context, PRA's
inputs equal the twin's.
"""
from __future__ import annotations

import numpy as np
import torch

from pra.config import ExperimentConfig
from pra.diagnostics import estimators as est
from pra.flow import make_flow
from pra.inputs import TrunkInputs
from pra.model.patches import image_patches
from pra.noise import Noise
from pra.rollout import rollout
from pra.runtime import generator

CONSTRUCTIONS = ("pra", "twin", "reconstruction", "energy_matched", "parallel_anchored")


@torch.no_grad()
def shared_draws(inputs: TrunkInputs, net, x: torch.Tensor, y: torch.Tensor, noise: Noise) -> dict[str, torch.Tensor]:
    """One batch of every input construction of a latent model from one (t, eps) draw per position: "true" (the
    clean patches), "reconstruction" (D(z, h(clean prefix)): no perturbation, t = 1), "pra", "energy_matched"
    (PRA's error size per token, isotropic direction), "twin" (D(z~, h(its own inputs))), "parallel_anchored"
    (each head ODE from the noised true state with the teacher-forced context, in one pass) and "anchored" (the
    sampler with each head ODE started from the noised true state, on its own context), all [B, N, P]."""
    B, N, _ = x.shape
    _, z = inputs.head_states(net, x, noise)  # the code PRA's training inputs perturb (method.head_target)
    t = inputs.perturbation_times(B, N, noise).to(x.dtype)
    eps = noise.randn(*z.shape, dtype=z.dtype)
    z_tilde = inputs.perturb(z, t, eps)  # method.perturbation_law; the anchored ones start on the flow's path
    h_tf = net.trunk(x[:, :-1], y)  # the teacher-forced trunk states (the head's condition)
    ctx = h_tf if net.decoder.ctx_in is not None else None
    rendered = net.to_pixels(z, ctx)
    pra = net.to_pixels(z_tilde, ctx)
    return {"true": x, "reconstruction": rendered, "pra": pra,
            "energy_matched": TrunkInputs.energy_matched(rendered, pra, noise),
            "twin": TrunkInputs.sequential(net, z_tilde, y),
            "parallel_anchored": net.to_pixels(inputs.anchored_states(net, z, t, eps, h_tf), ctx),
            "anchored": rollout(net, inputs.flow, y, inputs.rollout_settings, noise, anchor=(z, t),
                                anchor_noise=eps).patches}


@torch.no_grad()
def constructions(net, cfg: ExperimentConfig, images_u8: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                  batch_size: int = 250) -> dict[str, np.ndarray]:
    """shared_draws over all images: {name: [n, N, P]}."""
    device = next(net.parameters()).device
    inputs = TrunkInputs("anchored_rollout", cfg.method, make_flow(cfg.model, net.latent))
    noise = Noise(generator(seed, device))
    out: dict[str, list] = {}
    for i in range(0, len(images_u8), batch_size):
        x = image_patches(images_u8[i:i + batch_size], net.geometry.patch_size, device)
        y = torch.from_numpy(np.asarray(labels[i:i + batch_size])).to(device)
        for k, v in shared_draws(inputs, net, x, y, noise).items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v).float().cpu().numpy() for k, v in out.items()}


def content_positions(real_u8_patches: np.ndarray, *, ink_level: float = 0.25, content_share: float = 0.2
                      ) -> np.ndarray:
    """Boolean [N]: positions where at least content_share of the real images have a pixel above
    -1 + ink_level (patches in [-1, 1])."""
    ink = (real_u8_patches.max(-1) > -1 + ink_level).mean(0)
    return ink >= content_share


def distances(sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[n, N] Euclidean distances: each construction to the anchored rollout, the anchored rollout to the
    true patch."""
    a = sets["anchored"]
    out = {k: np.linalg.norm(sets[k] - a, axis=-1) for k in CONSTRUCTIONS if k in sets}
    out["anchored_to_true"] = np.linalg.norm(a - sets["true"], axis=-1)
    return out


def summarise(d: dict[str, np.ndarray], content: np.ndarray, *, subsamples: int = 100, seed: int = 0) -> dict:
    """Per position and over the content positions: mean distances and the ratio of each construction's to
    the anchored rollout's distance to the data, with subsampling intervals (rows = images, kept jointly)."""
    n, npos = d["anchored_to_true"].shape
    b = est.subsample_sizes(n)
    subs = est.subsample_rows(np.random.default_rng(seed), n, b, subsamples)

    def ratio(k, rows, cols):
        return float(d[k][np.ix_(rows, cols)].mean() / d["anchored_to_true"][np.ix_(rows, cols)].mean())

    all_rows, cols = np.arange(n), np.flatnonzero(content)
    out = {"positions": list(range(1, npos + 1)), "content_positions": (cols + 1).tolist(), "rows": n,
           "anchored_to_true": d["anchored_to_true"].mean(0).tolist(), "constructions": {}}
    for k in (k for k in CONSTRUCTIONS if k in d):
        per_pos = [ratio(k, all_rows, [j]) if d["anchored_to_true"][:, j].mean() > 0 else None for j in range(npos)]
        row = {"distance": d[k].mean(0).tolist(), "ratio": per_pos}
        if len(cols):
            full = ratio(k, all_rows, cols)
            sub = np.array([ratio(k, r, cols) for r in subs])
            row["content_ratio"] = full
            row["ci_content_ratio"] = est.subsample_interval(full, sub, n, b)
            row["content_distance"] = float(d[k][:, cols].mean())
        out["constructions"][k] = row
    if len(cols):  # PRA minus the twin, paired by image: does the parallel context cost anything?
        full = out["constructions"]["pra"]["content_ratio"] - out["constructions"]["twin"]["content_ratio"]
        sub = np.array([ratio("pra", r, cols) - ratio("twin", r, cols) for r in subs])
        out["pra_minus_twin_content_ratio"] = full
        out["ci_pra_minus_twin_content_ratio"] = est.subsample_interval(full, sub, n, b)
    return out


def approximation_error(net, cfg: ExperimentConfig, val_u8: np.ndarray, val_labels: np.ndarray, *,
                        subsamples: int = 100, seed: int = 0, ink_level: float = 0.25,
                        content_share: float = 0.2) -> dict:
    if not net.latent:
        return {"applicable": False, "why": "a pixel-space model has no state z to perturb"}
    sets = constructions(net, cfg, val_u8, val_labels, seed=seed)
    content = content_positions(sets["true"], ink_level=ink_level, content_share=content_share)
    res = summarise(distances(sets), content, subsamples=subsamples, seed=seed)
    res.update(applicable=True, settings={
        "images": int(len(val_u8)), "split": "val (held out)", "t_min": cfg.method.t_min,
        "perturbation_law": cfg.method.perturbation_law,
        "anchored_sampler": f"{cfg.method.rollout_ode_steps} {cfg.method.rollout_solver} steps from t_i to 1",
        "distance": "Euclidean, per patch, [-1, 1] pixels", "ratio": "mean distance to the anchored rollout's "
        "input / mean distance of the anchored rollout's input to the true patch (means over images)",
        "content_rule": f"positions where at least {content_share:.0%} of these real images have a pixel above "
                        f"{-1 + ink_level:+.2f} (background -1)", "subsamples": subsamples})
    return res
