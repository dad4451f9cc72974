"""Divergence estimators for the input-distribution gap, and a fixed PCA basis to compute them in.

* Gaussian KL: both sample sets are fitted with a Gaussian (covariance shrunk towards a scaled
  identity, S' = (1 - lam) S + lam * tr(S)/d * I, lam stated), and KL(N_p || N_q) in closed form.
* kNN KL (Wang, Kulkarni & Verdu 2009): D(P||Q) ~ d/n sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)),
  rho_k(i) the distance from x_i to its k-th neighbour among the other x, nu_k(i) to its k-th neighbour
  among the m samples of Q. Assumes no Gaussianity; consistent as n, m grow.
* Frechet distance between per-position Gaussians (for error accumulation).
"""
from __future__ import annotations

import numpy as np


class PCABasis:
    """Mean and top-k principal directions of a reference set (fitted once, then fixed)."""

    def __init__(self, reference: np.ndarray, k: int):
        x = np.asarray(reference, dtype=np.float64)
        self.mean = x.mean(0)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.components = vt[:k]
        self.explained = float((s[:k] ** 2).sum() / (s ** 2).sum())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T


def shrunk_cov(x: np.ndarray, shrinkage: float) -> np.ndarray:
    s = np.cov(x, rowvar=False)
    d = s.shape[0]
    return (1 - shrinkage) * s + shrinkage * np.trace(s) / d * np.eye(d)


def gaussian_kl_closed(mu_p, s_p, mu_q, s_q) -> float:
    """KL(N(mu_p, s_p) || N(mu_q, s_q))."""
    d = len(mu_p)
    sq_inv = np.linalg.inv(s_q)
    diff = mu_q - mu_p
    _, logdet_p = np.linalg.slogdet(s_p)
    _, logdet_q = np.linalg.slogdet(s_q)
    return float(0.5 * (np.trace(sq_inv @ s_p) + diff @ sq_inv @ diff - d + logdet_q - logdet_p))


def gaussian_kl(p: np.ndarray, q: np.ndarray, shrinkage: float = 0.05) -> float:
    """KL between Gaussian fits of two sample sets [n, d]."""
    return gaussian_kl_closed(p.mean(0), shrunk_cov(p, shrinkage), q.mean(0), shrunk_cov(q, shrinkage))


def knn_kl(p: np.ndarray, q: np.ndarray, k: int = 5) -> float:
    """k-nearest-neighbour estimate of KL(P || Q) from samples p [n, d] and q [m, d]."""
    from scipy.spatial import cKDTree

    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    n, d = p.shape
    m = len(q)
    rho = cKDTree(p).query(p, k=k + 1)[0][:, k]          # k-th neighbour other than the point itself
    nu = cKDTree(q).query(p, k=k)[0]
    nu = nu[:, k - 1] if k > 1 else nu
    eps = 1e-12
    return float(d / n * np.log((nu + eps) / (rho + eps)).sum() + np.log(m / (n - 1)))


def frechet(p: np.ndarray, q: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two sample sets (float64)."""
    from scipy import linalg

    mu1, mu2 = p.mean(0), q.mean(0)
    s1, s2 = np.cov(p, rowvar=False), np.cov(q, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def bootstrap(stat, p: np.ndarray, q: np.ndarray, reps: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of stat(p*, q*) over bootstrap resamples of both sets."""
    rng = np.random.default_rng(seed)
    vals = [stat(p[rng.integers(0, len(p), len(p))], q[rng.integers(0, len(q), len(q))]) for _ in range(reps)]
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)
