"""The input-distribution gap: what the trunk is trained on vs what it sees in its own sequential rollout.

For held-out (val) images and the given weights, the sets compared at every AR position are
* the training-input constructions: clean patches (teacher forcing), pixel-space Gaussian noise,
  and for latent models, from one (t, eps) draw per position (pra.diagnostics.approximation.shared_draws):
  the reconstruction-only control D(z_i, h_i(clean x_<i)) (t = 1), PRA's parallel construction
  D(z~_i, h_i(clean x_<i)), the energy-matched control (PRA's error size per token, isotropic direction), its
  sequential twin D(z~_i, h_i(x~_<i)), the parallel anchored construction and the anchored rollout, with exactly
  the training code (pra.inputs);
* the reference: the model's own sequential rollout at inference (the experiment's sampler settings),
  for the labels of the same images;
* the null: a second, independent rollout set of the same size. "Rollout vs rollout" shows where
  zero and sampling noise lie for each statistic.
Two spaces: the pixel inputs x~_i (positions 1..N-1, the ones fed back) and the trunk's hidden states
h_i (positions 2..N; h_1 sees only the label), which is what the head conditions on.
Every set gets the same preprocessing: pixel inputs are clipped and rounded to the 8-bit grid, then
dequantised with U(-1/255, 1/255); hidden states are the trunk's output for each set's own inputs.
Each space is projected on a fixed PCA basis fitted on train images (teacher-forced), not on any
compared set. Statistics: Gaussian KL and unbiased MMD^2 (pra.diagnostics.estimators), the MMD
tested by permuting images (jointly over positions), intervals by subsampling without replacement,
and each construction's excess over the null with a paired interval.

The MMD's kernel is fixed once per space: its bandwidth is the median distance of the clean (teacher-forced)
set pooled over the content positions, the positions where real images have ink (a rule fixed from the real
images alone, stated in the output). A bandwidth chosen per position would collapse at blank positions to the
dequantisation scale, where the MMD then records whether background pixels are exactly 0 rather than anything
about content. Means over positions (and everything derived from them) are taken over the content positions;
every position is still reported. Each construction's distance to the true patch stands beside its gap, and
in the trunk-state space (a model's own representation) each gap is also given relative to that of clean
inputs, the only reading that compares across models.
"""
from __future__ import annotations

import numpy as np
import torch

from pra.config import ExperimentConfig
from pra.diagnostics import estimators as est
from pra.diagnostics.approximation import content_positions, shared_draws
from pra.flow import make_flow
from pra.model.patches import image_patches, on_8bit_grid
from pra.noise import Noise
from pra.inputs import TrunkInputs
from pra.runtime import generator
from pra.rollout import SamplerSettings, rollout

# the gap's name of each construction of pra.diagnostics.approximation.shared_draws (the twin is named by its
# training method, pra_sequential)
LATENT_KEYS = {"reconstruction": "reconstruction", "pra": "pra", "energy_matched": "energy_matched",
               "pra_sequential": "twin", "parallel_anchored": "parallel_anchored", "anchored_rollout": "anchored"}
LATENT_CONSTRUCTIONS = ("teacher_forcing", "pixel_noise", *LATENT_KEYS)
PIXEL_CONSTRUCTIONS = ("teacher_forcing", "pixel_noise")
REFERENCE, NULL, TF = "rollout", "rollout_null", "teacher_forcing"


@torch.no_grad()
def collect(net, cfg: ExperimentConfig, images_u8: np.ndarray, labels: np.ndarray, *, seed: int = 0,
            batch_size: int = 250) -> dict[str, dict[str, np.ndarray]]:
    """{"inputs": {set: [n, N-1, P]}, "hidden": {set: [n, N-1, W]}} for every construction, the rollout
    and the null rollout (raw, before the pixel preprocessing)."""
    g = net.geometry
    device = next(net.parameters()).device
    noise = Noise(generator(seed, device))
    flow = make_flow(cfg.model, net.latent)
    settings = SamplerSettings.from_config(cfg.sample)
    obj = TrunkInputs("anchored_rollout", cfg.method, flow)
    names = (LATENT_CONSTRUCTIONS if net.latent else PIXEL_CONSTRUCTIONS) + (REFERENCE, NULL)
    out: dict[str, dict[str, list]] = {"inputs": {k: [] for k in names}, "hidden": {k: [] for k in names}}
    for i in range(0, len(images_u8), batch_size):
        x = image_patches(images_u8[i:i + batch_size], g.patch_size, device)
        y = torch.as_tensor(labels[i:i + batch_size]).to(device)
        sets = {"teacher_forcing": x, "pixel_noise": obj.pixel_noised(x, noise)}
        if net.latent:  # every latent construction from one (t, eps) draw per position
            d = shared_draws(obj, net, x, y, noise)
            sets.update({name: d[key] for name, key in LATENT_KEYS.items()})
        sets[REFERENCE] = rollout(net, flow, y, settings, noise).patches
        sets[NULL] = rollout(net, flow, y, settings, noise).patches
        for name, inp in sets.items():
            fed = inp[:, :-1]
            out["inputs"][name].append(fed)
            out["hidden"][name].append(net.trunk(fed, y)[:, 1:])
    return {space: {k: torch.cat(v).float().cpu().numpy() for k, v in per_set.items()}
            for space, per_set in out.items()}


def preprocess_inputs(inputs: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The same 8-bit rounding and U(-1/255, 1/255) dequantisation for every set of pixel inputs."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in sorted(inputs):
        grid = on_8bit_grid(torch.from_numpy(inputs[k])).numpy().astype(np.float64)
        out[k] = grid + rng.uniform(-1 / 255, 1 / 255, grid.shape)
    return out


@torch.no_grad()
def fit_bases(net, images_u8: np.ndarray, labels: np.ndarray, pca_dim: int, batch_size: int = 250):
    """PCA bases of the two spaces, fitted on teacher-forced train images (never on a compared set)."""
    g = net.geometry
    device = next(net.parameters()).device
    xs, hs = [], []
    for i in range(0, len(images_u8), batch_size):
        x = image_patches(images_u8[i:i + batch_size], g.patch_size, device)
        y = torch.as_tensor(labels[i:i + batch_size]).to(device)
        xs.append(x[:, :-1].reshape(-1, x.shape[-1]).float().cpu().numpy())
        h = net.trunk(x[:, :-1], y)[:, 1:]
        hs.append(h.reshape(-1, h.shape[-1]).float().cpu().numpy())
    return {"inputs": est.PCABasis(np.concatenate(xs), pca_dim), "hidden": est.PCABasis(np.concatenate(hs), pca_dim)}


def fixed_bandwidth(proj: dict[str, np.ndarray], content: np.ndarray, seed: int = 0) -> float:
    """The kernel bandwidth of a space: the median distance of the clean set (else the reference) pooled over
    the content positions."""
    base = proj[TF] if TF in proj else proj[REFERENCE]
    cols = np.flatnonzero(content) if content.any() else np.arange(base.shape[1])
    return est.median_bandwidth(base[:, cols].reshape(-1, base.shape[-1]), seed=seed)


def compare(proj: dict[str, np.ndarray], *, permutations: int = 200, subsamples: int = 100,
            shrinkage: float = 0.05, seed: int = 0, content: np.ndarray | None = None) -> dict:
    """Every set of `proj` ({name: [n, positions, k]}, all with n rows) against REFERENCE; NULL is one of the
    compared sets, so its row is the calibration. Per position: Gaussian KL, MMD^2 and its permutation
    p-value; over positions (mean): both statistics, the MMD's permutation p-value and subsampling
    interval, the excess over the null and (for a construction other than teacher forcing) the MMD^2
    minus that of clean inputs, each with a paired subsampling interval.

    Row i of every set belongs to image i (its label, and its prefix where a construction uses one), so
    the design is paired: the MMD^2 is the paired U-statistic (estimators.mmd2_paired), a permutation swaps
    set membership within rows (row i of the set with row i of the reference, jointly over positions), and
    a subsample keeps the same rows of every set. Pooling the rows instead would mix the label balance
    that the sets share by construction and inflate the null; the unpaired statistic would read negative.
    """
    rng = np.random.default_rng(seed)
    ref = proj[REFERENCE]
    n, npos, _ = ref.shape
    content = np.ones(npos, bool) if content is None else np.asarray(content, bool)
    cols = np.flatnonzero(content) if content.any() else np.arange(npos)
    bw = fixed_bandwidth(proj, content, seed)
    b = est.subsample_sizes(n)
    names = [k for k in proj if k != REFERENCE]
    rows = np.arange(n)
    # shared across sets and positions: within-row swaps and subsets of rows (image-level resampling)
    swaps = [rng.random(n) < 0.5 for _ in range(permutations)]
    subs = est.subsample_rows(rng, n, b, subsamples)
    a_full = est.indicator(2 * n, [rows])
    b_full = 1 - a_full
    m_full = np.ones((n, 1))
    a_perm = est.indicator(2 * n, [np.where(sw, rows + n, rows) for sw in swaps])
    b_perm = 1 - a_perm
    m_perm = np.ones((n, permutations))
    a_sub = est.indicator(2 * n, subs)
    b_sub = est.indicator(2 * n, [r + n for r in subs])
    m_sub = est.indicator(n, subs)
    kl = {k: np.zeros(npos) for k in names}
    kl_sub = {k: np.zeros((subsamples, npos)) for k in names}
    mmd = {k: np.zeros(npos) for k in names}
    mmd_perm = {k: np.zeros((permutations, npos)) for k in names}
    mmd_sub = {k: np.zeros((subsamples, npos)) for k in names}
    for j in range(npos):
        q = ref[:, j]
        for k in names:
            p = proj[k][:, j]
            kl[k][j] = est.gaussian_kl(p, q, shrinkage)
            for r, idx in enumerate(subs):
                kl_sub[k][r, j] = est.gaussian_kl(p[idx], q[idx], shrinkage)
            K = est.gaussian_kernel(np.concatenate([p, q]), bw)
            mmd[k][j] = est.mmd2_paired(K, a_full, b_full, m_full)[0]
            mmd_perm[k][:, j] = est.mmd2_paired(K, a_perm, b_perm, m_perm)
            mmd_sub[k][:, j] = est.mmd2_paired(K, a_sub, b_sub, m_sub)
    out = {}
    for k in names:
        row = {"gaussian_kl": kl[k].tolist(), "mmd2": mmd[k].tolist(),
               "mmd2_p": [est.permutation_pvalue(mmd[k][j], mmd_perm[k][:, j]) for j in range(npos)],
               "mmd2_perm_q95": np.quantile(mmd_perm[k], 0.95, axis=0).tolist(),
               "mean_gaussian_kl": float(kl[k][cols].mean()), "mean_mmd2": float(mmd[k][cols].mean()),
               "ci_mmd2": est.subsample_interval(float(mmd[k][cols].mean()), mmd_sub[k][:, cols].mean(1), n, b),
               "mmd2_mean_p": est.permutation_pvalue(mmd[k][cols].mean(), mmd_perm[k][:, cols].mean(1))}
        if NULL in proj and k != NULL:
            for stat, full, sub, null_full, null_sub in (
                    ("gaussian_kl", kl[k], kl_sub[k], kl[NULL], kl_sub[NULL]),
                    ("mmd2", mmd[k], mmd_sub[k], mmd[NULL], mmd_sub[NULL])):
                ex = float(full[cols].mean() - null_full[cols].mean())
                row[f"excess_{stat}"] = ex
                row[f"ci_excess_{stat}"] = est.subsample_interval(
                    ex, sub[:, cols].mean(1) - null_sub[:, cols].mean(1), n, b)
        if TF in proj and k not in (TF, NULL):  # this construction minus clean inputs, paired by image
            d = float(mmd[k][cols].mean() - mmd[TF][cols].mean())
            row["minus_tf_mmd2"] = d
            row["ci_minus_tf_mmd2"] = est.subsample_interval(
                d, mmd_sub[k][:, cols].mean(1) - mmd_sub[TF][:, cols].mean(1), n, b)
            tf = float(mmd[TF][cols].mean())
            if tf > 0:  # relative to clean inputs: comparable across models (their own representations)
                row["ratio_to_tf_mmd2"] = float(mmd[k][cols].mean()) / tf
        out[k] = row
    return {"sets": out, "bandwidth": bw, "kernel": "Gaussian, one bandwidth per space: the median distance of "
            "the clean set pooled over the content positions", "content_positions": (cols + 1).tolist(),
            "rows": n, "subsample_rows": b}


def input_gap(net, cfg: ExperimentConfig, val_u8: np.ndarray, val_labels: np.ndarray, train_u8: np.ndarray,
              train_labels: np.ndarray, *, pca_dim: int = 8, shrinkage: float = 0.05, permutations: int = 200,
              subsamples: int = 100, seed: int = 0) -> dict:
    raw = collect(net, cfg, val_u8, val_labels, seed=seed)
    content = content_positions(raw["inputs"][TF])  # the same rule as the approximation error's
    # how far each construction's pixel inputs lie from the true patches (before any preprocessing)
    to_true = {k: np.linalg.norm(v - raw["inputs"][TF], axis=-1) for k, v in raw["inputs"].items() if k != TF}
    raw["inputs"] = preprocess_inputs(raw["inputs"], seed)
    bases = fit_bases(net, train_u8, train_labels, pca_dim)
    N = net.geometry.num_tokens
    result = {"constructions": [k for k in raw["inputs"] if k not in (REFERENCE, NULL)], "spaces": {},
              "settings": {
                  "images": int(len(val_u8)), "split": "val (held out)", "pca_dim": pca_dim,
                  "pca_fitted_on": f"teacher-forced inputs / hidden states of {len(train_u8)} train images",
                  "covariance_shrinkage": shrinkage, "permutations": permutations, "subsamples": subsamples,
                  "subsample_fraction": 0.5,
                  "kernel": "Gaussian, one bandwidth per space: the median distance of the clean set pooled "
                            "over the content positions",
                  "content_rule": "input positions where at least 20% of these real images have a pixel above "
                                  "-0.75 (background -1); the hidden state after each such input",
                  "preprocessing": "pixel inputs of every set: clipped, rounded to the 8-bit grid, + U(-1/255, 1/255)",
                  "reference": "the model's own sequential rollout (sampler settings of the experiment)",
                  "null": "a second, independent rollout of the same images' labels"}}
    for space, positions in (("inputs", list(range(1, N))), ("hidden", list(range(2, N + 1)))):
        basis = bases[space]
        proj = {k: np.stack([basis(v[:, j]) for j in range(v.shape[1])], 1) for k, v in raw[space].items()}
        res = compare(proj, permutations=permutations, subsamples=subsamples, shrinkage=shrinkage, seed=seed,
                      content=content)
        res["positions"] = positions
        # compare() numbers the content columns 1.. ; name them by this space's positions (h_i follows input i-1)
        res["content_positions"] = [positions[c - 1] for c in res["content_positions"]]
        if space == "inputs":
            cols = np.flatnonzero(content) if content.any() else np.arange(len(content))
            for k, d in to_true.items():
                if k in res["sets"]:
                    res["sets"][k]["distance_to_true"] = d.mean(0).tolist()
                    res["sets"][k]["mean_distance_to_true"] = float(d[:, cols].mean())
        res["pca_explained_variance"] = basis.explained
        result["spaces"][space] = res
    return result
