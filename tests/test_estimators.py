"""The diagnostics' instruments on cases with known answers, including the failure modes of a kNN KL
on quantised data and of bootstrap intervals."""
import numpy as np
import pytest

from pra.diagnostics import estimators as est
from pra.diagnostics.gap import NULL, REFERENCE, compare, preprocess_inputs


def test_gaussian_kl_closed_form_1d():
    # KL(N(0, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2
    got = est.gaussian_kl_closed(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1))
    assert got == pytest.approx(np.log(2) + 2 / 8 - 0.5, rel=1e-12)


def test_gaussian_kl_from_samples_matches_the_closed_form():
    rng = np.random.default_rng(0)
    p = rng.normal(0, 1, (20000, 3))
    q = rng.normal(0.5, 2, (20000, 3))
    expected = 3 * (np.log(2) + (1 + 0.25) / 8 - 0.5)
    assert est.gaussian_kl(p, q, shrinkage=0.0) == pytest.approx(expected, rel=0.03)


def _mmd2_gaussians(mu1, s1, mu2, s2, bw, d):
    """Closed-form MMD^2 of N(mu1, s1^2 I) and N(mu2, s2^2 I) under k(x, y) = exp(-|x-y|^2 / (2 bw^2))."""
    def ek(m1, v1, m2, v2):
        c = bw ** 2 + v1 + v2
        return (bw ** 2 / c) ** (d / 2) * np.exp(-0.5 * np.sum((m1 - m2) ** 2) / c)
    return ek(mu1, s1 ** 2, mu1, s1 ** 2) + ek(mu2, s2 ** 2, mu2, s2 ** 2) - 2 * ek(mu1, s1 ** 2, mu2, s2 ** 2)


def test_unbiased_mmd2_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    d, bw = 2, 1.5
    mu2 = np.array([0.8, 0.0])
    p = rng.normal(0, 1, (3000, d))
    q = rng.normal(0, 1.3, (3000, d)) + mu2
    truth = _mmd2_gaussians(np.zeros(d), 1.0, mu2, 1.3, bw, d)
    assert est.mmd2(p, q, bandwidth=bw) == pytest.approx(truth, abs=0.01)
    assert truth > 0.05  # a case the test can fail


def test_frechet_matches_the_closed_form_and_pca_is_fixed():
    rng = np.random.default_rng(4)
    p = rng.normal(0, 1, (50000, 2))
    q = rng.normal(1, 2, (50000, 2))
    assert est.frechet(p, q) == pytest.approx(2 * 1 + 2 * (1 - 2) ** 2, rel=0.03)
    basis = est.PCABasis(rng.normal(size=(500, 6)) * np.arange(1, 7), k=2)
    assert basis(np.zeros((1, 6))).shape == (1, 2) and 0 < basis.explained <= 1
    assert np.argmax(np.abs(basis.components[0])) == 5  # the highest-variance axis first


def _sets(make, n=300, positions=3, seed=0):
    rng = np.random.default_rng(seed)
    return {k: np.stack([f(rng, n) for _ in range(positions)], 1) for k, f in make.items()}


def test_equal_distributions_read_zero_with_intervals_that_cover_it():
    """P = Q: the excess over the null is about 0 and its interval covers 0 in most repetitions; MMD
    permutation p-values are not small."""
    cover_kl = cover_mmd = 0
    pvals = []
    reps = 12
    for s in range(reps):
        g = lambda rng, n: rng.normal(0, 1, (n, 4))  # noqa: E731
        res = compare(_sets({"same": g, REFERENCE: g, NULL: g}, n=200, seed=s), permutations=100, subsamples=60,
                      seed=s)["sets"]["same"]
        cover_kl += res["ci_excess_gaussian_kl"][0] <= 0 <= res["ci_excess_gaussian_kl"][1]
        cover_mmd += res["ci_excess_mmd2"][0] <= 0 <= res["ci_excess_mmd2"][1]
        pvals.append(res["mmd2_mean_p"])
        assert abs(res["mean_mmd2"]) < 0.01
    assert cover_kl >= reps - 3 and cover_mmd >= reps - 3, (cover_kl, cover_mmd)
    assert np.mean(np.array(pvals) < 0.05) <= 0.25 and np.mean(pvals) > 0.25, pvals


def test_a_real_difference_is_detected_beyond_the_null():
    g = lambda rng, n: rng.normal(0, 1, (n, 4))  # noqa: E731
    shifted = lambda rng, n: rng.normal(0, 1, (n, 4)) + 0.5  # noqa: E731
    res = compare(_sets({"shifted": shifted, REFERENCE: g, NULL: g}), permutations=100, subsamples=60)["sets"]
    s = res["shifted"]
    assert s["mmd2_mean_p"] <= 0.02 and s["ci_excess_mmd2"][0] > 0 and s["ci_excess_gaussian_kl"][0] > 0
    assert s["mean_gaussian_kl"] > 5 * res[NULL]["mean_gaussian_kl"]


def test_point_masses_with_equal_moments_do_not_read_as_a_large_divergence():
    """Rademacher coordinates (16 atoms, mean 0, variance 1) vs N(0, I): the Gaussian KL sees equal
    moments (about the null), the MMD^2 stays bounded and small (a kNN KL read tens of nats here)."""
    rad = lambda rng, n: rng.choice([-1.0, 1.0], (n, 4))  # noqa: E731
    g = lambda rng, n: rng.normal(0, 1, (n, 4))  # noqa: E731
    res = compare(_sets({"atoms": rad, REFERENCE: g, NULL: g}, n=400), permutations=50, subsamples=40)["sets"]
    assert res["atoms"]["mean_gaussian_kl"] < 3 * res[NULL]["mean_gaussian_kl"] + 0.02
    assert 0 <= res["atoms"]["mean_mmd2"] < 0.1


def _background_heavy(rng, n, sigma):
    """Patches like digits: 60% exactly the background vector, 40% spread; plus noise of std sigma."""
    x = np.where(rng.random((n, 1)) < 0.6, -1.0, rng.uniform(-1, 1, (n, 6)))
    return x + sigma * rng.normal(size=(n, 6))


def test_a_noisier_construction_never_ranks_closer():
    """Reference: background-heavy data with noise 0.1. Constructions with noise 0 (exact duplicates),
    0.1, 0.3 and 0.5: both statistics order them by their distance in noise level."""
    make = {f"s{s}": (lambda s: lambda rng, n: _background_heavy(rng, n, s))(s) for s in (0.0, 0.1, 0.3, 0.5)}
    make[REFERENCE] = make[NULL] = lambda rng, n: _background_heavy(rng, n, 0.1)
    res = compare(_sets(make, n=300), permutations=20, subsamples=20)["sets"]
    for stat in ("mean_gaussian_kl", "mean_mmd2"):
        v = {k: res[k][stat] for k in ("s0.0", "s0.1", "s0.3", "s0.5")}
        assert v["s0.1"] < v["s0.3"] < v["s0.5"], (stat, v)
        assert v["s0.0"] < v["s0.5"], (stat, v)


def test_preprocessing_treats_quantised_and_continuous_sets_alike():
    """Real patches are on the 8-bit grid (exact duplicates), generated ones continuous: after the common
    rounding + dequantisation they are indistinguishable when drawn from the same law."""
    rng = np.random.default_rng(5)
    cont = _background_heavy(rng, 600, 0.0)[:, None].repeat(2, 1).clip(-1, 1)
    quant = np.round((cont + 1) * 127.5) / 127.5 - 1
    other = _background_heavy(rng, 600, 0.0)[:, None].repeat(2, 1).clip(-1, 1)
    sets = preprocess_inputs({"quantised": quant, REFERENCE: other, NULL: _background_heavy(rng, 600, 0.0)[:, None]
                              .repeat(2, 1).clip(-1, 1)}, seed=0)
    assert len(np.unique(sets["quantised"][:, 0, 0])) > 500  # no exact duplicates left
    res = compare(sets, permutations=100, subsamples=40)["sets"]["quantised"]
    assert res["mmd2_mean_p"] > 0.01 and res["ci_excess_mmd2"][0] <= 0


def test_subsampling_interval_covers_the_truth_at_about_its_level():
    rng = np.random.default_rng(7)
    hits, reps = 0, 200
    for _ in range(reps):
        x = rng.normal(1.0, 1.0, 200)
        subs = [x[est.subsample_rows(rng, 200, 100, 1)[0]].mean() for _ in range(100)]
        lo, hi = est.subsample_interval(float(x.mean()), np.array(subs), 200, 100)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / reps <= 0.995, hits / reps


def test_subsamples_never_repeat_a_point():
    rows = est.subsample_rows(np.random.default_rng(0), 50, 25, 10)
    assert all(len(set(r.tolist())) == 25 for r in rows)


def test_rows_that_share_labels_are_compared_pairwise():
    """Every set's row i carries image i's label, and the label moves the data a lot. Sets drawn from the
    same class-conditional law must then read as equal: permutation p-values spread over (0, 1], not piled
    at 1 as a test that pools rows across labels would give."""
    pvals, values, inside = [], [], 0
    for s in range(8):
        rng = np.random.default_rng(100 + s)
        labels = np.repeat(np.arange(10), 20)
        centres = rng.normal(0, 3, (10, 4))
        draw = lambda: np.stack([centres[labels] + rng.normal(0, 1, (200, 4)) for _ in range(2)], 1)  # noqa: E731
        res = compare({"same": draw(), REFERENCE: draw(), NULL: draw()}, permutations=100, subsamples=40, seed=s)
        r = res["sets"]["same"]
        pvals.append(r["mmd2_mean_p"])
        values.append(r["mean_mmd2"])
        inside += r["ci_mmd2"][0] <= r["mean_mmd2"] <= r["ci_mmd2"][1]
    assert 0.15 < np.mean(pvals) < 0.85 and min(pvals) < 0.6, pvals
    # the paired statistic is centred on 0 (the unpaired one reads negative: matched pairs share a label)
    assert abs(np.mean(values)) < 2.5 * np.std(values) / np.sqrt(len(values)), values
    assert inside == len(values)
