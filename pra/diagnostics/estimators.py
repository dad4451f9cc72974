"""Two-sample instruments for the diagnostics, each with a known-answer test in tests/test_estimators.py.

* Gaussian KL: both sample sets fitted with a Gaussian (covariance shrunk towards a scaled identity,
  S' = (1 - lam) S + lam * tr(S)/d * I, lam stated) and KL(N_p || N_q) in closed form. A plug-in
  estimate: positive even when P = Q (about d(d+3)/(4n) nats), which is why every reading is shown
  beside a null computed at the same sample size.
* MMD^2 (unbiased, Gaussian kernel, one bandwidth per comparison group): distribution-free, zero in
  expectation when P = Q, tested by permutation. Computed from one pooled kernel matrix with 0/1
  indicator columns, so that permutations and subsamples are quadratic forms (one matrix product).
* Frechet distance between Gaussian fits (error accumulation).
* Intervals by subsampling without replacement (Politis, Romano & Wolf 1999; with b = n/2 this is the
  delete-d jackknife): the spread of the statistic on subsets of b of the n rows, rescaled by
  sqrt(b / (n - b)), the factor that makes it the full-size spread of a root-n statistic once the
  overlap of a subset with the full set is accounted for. No subset repeats a point, so the collapse of
  distances that bootstrap duplicates cause cannot occur.
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


# ---- Gaussian fits -----------------------------------------------------------------------------
def shrunk_cov(x: np.ndarray, shrinkage: float) -> np.ndarray:
    s = np.atleast_2d(np.cov(x, rowvar=False))
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


def frechet(p: np.ndarray, q: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two sample sets (float64)."""
    from scipy import linalg

    mu1, mu2 = p.mean(0), q.mean(0)
    s1, s2 = np.cov(p, rowvar=False), np.cov(q, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


# ---- MMD ---------------------------------------------------------------------------------------
def sq_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = (x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None] - 2 * x @ y.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """The median pairwise distance of (a fixed subset of) x: the usual Gaussian-kernel bandwidth."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    d = sq_distances(x, x)[np.triu_indices(len(x), 1)]
    med = float(np.sqrt(np.median(d)))
    return med if med > 0 else 1.0


def gaussian_kernel(x: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-sq_distances(x, x) / (2 * bandwidth ** 2))


def mmd2_quadratic(K: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 between the row groups selected by the 0/1 columns of A and B [rows, R] (disjoint,
    each column at least 2 rows) of the pooled kernel matrix K; returns R values."""
    KA, KB = K @ A, K @ B
    diag = np.diag(K)
    na, nb = A.sum(0), B.sum(0)
    xx = ((A * KA).sum(0) - diag @ A) / (na * (na - 1))
    yy = ((B * KB).sum(0) - diag @ B) / (nb * (nb - 1))
    xy = (A * KB).sum(0) / (na * nb)
    return xx + yy - 2 * xy


def mmd2_paired(K: np.ndarray, A: np.ndarray, B: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 of paired samples: K is the kernel of [x_1..x_n, y_1..y_n] where x_i and y_i belong to
    one unit (one image: its label, its prefix). Column r of A and B [2n, R] selects the x- and y-side rows of
    the units in M[:, r] [n, R] (0/1; a permutation may swap the sides of a unit). The statistic is the
    U-statistic over distinct units, mean_{i != j} k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i):
    the matched cross terms k(x_i, y_i), which a shared label makes large, are left out, so it has
    expectation 0 when P = Q even though x_i and y_i are dependent."""
    n = K.shape[0] // 2
    KA, KB = K @ A, K @ B
    diag = np.diag(K)
    matched = np.diag(K[:n, n:]) @ M
    m = M.sum(0)
    xx = (A * KA).sum(0) - diag @ A
    yy = (B * KB).sum(0) - diag @ B
    xy = (A * KB).sum(0) - matched
    return (xx + yy - 2 * xy) / (m * (m - 1))


def mmd2(p: np.ndarray, q: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 of two sample sets with a Gaussian kernel (median bandwidth of the pooled set)."""
    x = np.concatenate([p, q])
    bw = bandwidth or median_bandwidth(x)
    a = np.zeros((len(x), 1))
    a[:len(p)] = 1
    return float(mmd2_quadratic(gaussian_kernel(x, bw), a, 1 - a)[0])


def indicator(rows: int, selections: list[np.ndarray]) -> np.ndarray:
    """[rows, R] 0/1 matrix whose column r selects selections[r]."""
    m = np.zeros((rows, len(selections)))
    for r, idx in enumerate(selections):
        m[idx, r] = 1.0
    return m


def permutation_pvalue(observed: float, null: np.ndarray) -> float:
    """One-sided p-value with the observed statistic counted among the permutations (never 0)."""
    return float((1 + np.sum(np.asarray(null) >= observed)) / (1 + len(null)))


# ---- intervals ---------------------------------------------------------------------------------
def subsample_sizes(n: int, fraction: float = 0.5) -> int:
    return max(2, int(round(n * fraction)))


def subsample_interval(full: float, sub: np.ndarray, n: int, b: int, level: float = 0.95) -> tuple[float, float]:
    """Interval for the statistic from its values on subsets of size b of n (without replacement):
    theta in [S_n - q_hi * r, S_n - q_lo * r], q the quantiles of S_b - S_n and r = sqrt(b / (n - b))
    (Var(S_b - S_n) = sigma^2 (1/b - 1/n) for a mean, so r maps it onto sigma^2 / n)."""
    dev = np.asarray(sub) - full
    lo_q, hi_q = np.quantile(dev, [(1 - level) / 2, (1 + level) / 2])
    r = np.sqrt(b / (n - b))
    return float(full - hi_q * r), float(full - lo_q * r)


def subsample_rows(rng: np.random.Generator, n: int, b: int, reps: int) -> list[np.ndarray]:
    return [np.sort(rng.choice(n, b, replace=False)) for _ in range(reps)]


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def paired_proportion_difference(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """mean(x) - mean(y) of two binary outcomes on the same items, with Newcombe's (1998) square-and-add interval
    for paired data (his method 10): each proportion's Wilson interval, combined with the correlation of the pairs
    (phi, continuity-corrected as he corrects it). Near-nominal coverage where the discordant pairs are few, which
    a subsampling interval of the mean difference is not (with no discordant pair it is a point)."""
    x, y = np.asarray(x, dtype=bool), np.asarray(y, dtype=bool)
    if x.shape != y.shape or x.ndim != 1 or not len(x):
        raise ValueError(f"two binary outcomes of the same items are needed, got shapes {x.shape} and {y.shape}")
    n = len(x)
    both, only_x, only_y = int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum())
    neither = n - both - only_x - only_y
    p1, p2 = (both + only_x) / n, (both + only_y) / n
    l1, u1 = wilson_interval(both + only_x, n, level)
    l2, u2 = wilson_interval(both + only_y, n, level)
    margins = (both + only_x) * (only_y + neither) * (both + only_y) * (only_x + neither)
    cross = both * neither - only_x * only_y
    corrected = cross - n / 2 if cross > n / 2 else cross if cross < 0 else 0.0
    phi = corrected / np.sqrt(margins) if margins > 0 else 0.0
    d = p1 - p2
    lo = d - np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    hi = d + np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return float(d), float(max(lo, -1.0)), float(min(hi, 1.0))
