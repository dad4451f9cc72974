"""Known answers of the error-accumulation instrument (pra.diagnostics.accumulation), on synthetic sets where the
truth is known in closed form, including the failure mode of its predecessor (differences of plug-in Frechet
distances, biased when the compared sets differ in spread)."""
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq

from pra.diagnostics import accumulation as acc
from pra.diagnostics import estimators as est
from test_estimators import _mmd2_gaussians

D, BW = 4, 2.0


def _equal_distance_spread(s1: float) -> float:
    """The spread s2 > 1 at which N(0, s2^2 I) lies as far (true MMD^2) from N(0, I) as N(0, s1^2 I) does."""
    target = _mmd2_gaussians(np.zeros(D), s1, np.zeros(D), 1.0, BW, D)
    return brentq(lambda s: _mmd2_gaussians(np.zeros(D), s, np.zeros(D), 1.0, BW, D) - target, 1.0 + 1e-6, 10.0)


def _one_class_scores(gens: list[np.ndarray], ref: np.ndarray) -> list[float]:
    x = np.concatenate([ref, *gens])
    K = est.gaussian_kernel(x, BW)
    n = len(ref)
    lab = np.zeros(len(gens[0]), int)
    return [acc.class_mmd2(K, n + i * len(g) + np.arange(len(g)), np.arange(n), lab, np.zeros(n, int))
            for i, g in enumerate(gens)]


def test_excess_reads_zero_with_unequal_spreads_and_no_error():
    """Two generators equally far from the reference (equal true MMD^2), one narrower and one wider than it: the
    excess (a difference of unbiased MMD^2) averages 0 over 300 repetitions at n = 150; a generator that is
    really further away reads far above that."""
    s1 = 0.8
    s2 = _equal_distance_spread(s1)
    assert s2 > 1.2  # the spreads really differ
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(300):
        ref = rng.normal(0, 1, (150, D))
        g1, g2 = rng.normal(0, s1, (150, D)), rng.normal(0, s2, (150, D))
        a, b = _one_class_scores([g1, g2], ref)
        diffs.append(b - a)
    diffs = np.array(diffs)
    se = diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert abs(diffs.mean()) < 3 * se, (diffs.mean(), se)
    # the instrument can fail: a generator that is really further away reads a positive excess
    far = []
    for _ in range(100):
        ref = rng.normal(0, 1, (150, D))
        a, b = _one_class_scores([rng.normal(0, s1, (150, D)), rng.normal(0.6, s1, (150, D))], ref)
        far.append(b - a)
    assert np.mean(far) > 10 * se


def test_frechet_differences_are_biased_by_unequal_spreads():
    """The failure mode the instrument replaces: with equal true Frechet distance to N(0, I) (spreads 0.7 and 1.3:
    FD = d (s - 1)^2 for N(0, s^2 I)) the difference of plug-in FDs at n = 150 is off 0 by several standard
    errors."""
    def fd_true(s):
        return D * (s - 1.0) ** 2
    s1 = 0.7
    s2 = brentq(lambda s: fd_true(s) - fd_true(s1), 1.0 + 1e-6, 5.0)  # = 1.3: equal true FD
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(300):
        ref = rng.normal(0, 1, (150, D))
        diffs.append(est.frechet(rng.normal(0, s2, (150, D)), ref) - est.frechet(rng.normal(0, s1, (150, D)), ref))
    diffs = np.array(diffs)
    se = diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert abs(diffs.mean()) > 3 * se, (diffs.mean(), se)


def _coverage(shrink: float, reps: int, rng) -> int:
    """How often the excess interval (shrunk about its estimate by `shrink`) covers the true excess."""
    mu = np.zeros(D)
    shift = np.array([0.8] + [0.0] * (D - 1))
    truth = _mmd2_gaussians(shift, 1.0, mu, 1.0, BW, D) - _mmd2_gaussians(mu, 0.9, mu, 1.0, BW, D)
    assert truth > 0.02
    hits = 0
    for _ in range(reps):
        z = rng.normal(0, 1, (100, D))  # paired sets, as k = 0 and k > 0 share images and noise
        sets = {"0": 0.9 * z, "k": z + shift}
        real_a, real_b = rng.normal(0, 1, (100, D)), rng.normal(0, 1, (100, D))
        lab = np.zeros(100, int)
        sc = acc.region_scores(sets, real_a, real_b, lab, lab, baseline="0", bandwidth=BW, subsamples=50,
                               seed=int(rng.integers(1 << 30)))
        est_, (lo, hi) = sc["excess"]["k"], sc["ci_excess"]["k"]
        lo, hi = est_ - shrink * (est_ - lo), est_ + shrink * (hi - est_)
        hits += lo <= truth <= hi
    return hits


def test_excess_interval_covers_at_its_level_and_a_twice_too_narrow_one_fails():
    """200 repetitions: a 95% interval covers the truth at least `floor` times, the 0.1% quantile of
    Binomial(200, 0.95) (a correct interval falls below it once in a thousand runs); the same intervals halved
    (coverage ~67% for a normal statistic) fall below it, so the check has power."""
    reps = 200
    floor = int(stats.binom.ppf(0.001, reps, 0.95))
    hits = _coverage(1.0, reps, np.random.default_rng(3))
    narrow = _coverage(0.5, reps, np.random.default_rng(3))
    assert hits >= floor, (hits, floor)
    assert narrow < floor, (narrow, floor)


def test_growth_exponent_is_recovered_and_absent_growth_reads_none():
    e = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    rng = np.random.default_rng(0)
    excess = 0.002 * e ** 1.5 + rng.normal(0, 0.0005, len(e)) * (e > 0)
    fit = acc.growth_fit(e, excess)
    assert fit["beta"] == pytest.approx(1.5, abs=0.1)
    assert acc.growth_fit(e, -np.abs(excess)) is None  # nothing grows: no exponent, not a fitted 0


def test_region_prefix_grid_and_exposure():
    content = np.zeros((4, 4), bool)
    content[1, 1:3] = True
    content[2, [0, 1, 3]] = True  # a gap inside the row: the region is still one contiguous run
    region = acc.evaluation_region(content.ravel(), 4)
    assert region.tolist() == [8, 9, 10, 11]  # the last row with content, from its first to its last content column
    assert acc.prefix_grid(8) == [0, 1, 2, 4, 8] and acc.prefix_grid(36) == [0, 1, 2, 4, 8, 16, 32, 36]
    ink = np.arange(16) / 16
    # k generated positions just before the region: E(2) = ink[7] + ink[6]
    assert acc.exposure([0, 1, 2], 8, ink).tolist() == pytest.approx([0.0, 7 / 16, 13 / 16])
    with pytest.raises(ValueError, match="no content"):
        acc.evaluation_region(np.zeros(16, bool), 4)
