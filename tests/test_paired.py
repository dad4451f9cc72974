"""Known answers for the paired statistics (pra.paired): scipy, exact enumeration, simulation."""
import math

import numpy as np
import pytest
from scipy import stats

from pra import paired as P

rng = np.random.default_rng(0)
A = np.array([20.1, 22.4, 19.8, 24.0, 21.7, 23.3, 20.9, 22.2])
B = np.array([21.0, 23.9, 21.5, 24.4, 23.6, 24.0, 22.8, 22.9])


def test_paired_t_matches_scipy_on_the_log_scale():
    r = P.paired_t(A, B, level=0.9)
    ref = stats.ttest_rel(np.log(A), np.log(B))
    assert r.p == pytest.approx(ref.pvalue, rel=1e-12)
    ci = stats.ttest_1samp(np.log(A) - np.log(B), 0).confidence_interval(0.9)
    assert r.ci == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert r.ratio == pytest.approx(math.exp(np.mean(np.log(A / B))))
    assert r.ratio_ci[0] < r.ratio < r.ratio_ci[1]
    raw = P.paired_t(A, B, log=False)
    assert raw.p == pytest.approx(stats.ttest_rel(A, B).pvalue, rel=1e-12) and raw.ratio is None


def test_sign_flip_is_exact():
    # all n differences of one sign: only the two all-same assignments reach the observed |mean|
    for n in (3, 5, 8):
        assert P.sign_flip(np.arange(1, n + 1)) == pytest.approx(2 / 2 ** n)
    d = np.log(A) - np.log(B)
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                 alternative="two-sided")
    assert P.sign_flip(d) == pytest.approx(ref.pvalue, abs=1e-12)
    assert P.sign_flip(np.zeros(4)) == 1.0


def test_tost_is_two_one_sided_tests_and_says_equal_only_inside_the_margin():
    d = np.log(A) - np.log(B)
    r = P.tost(A, B, margin_ratio=1.15)
    lo = stats.ttest_1samp(d, -math.log(1.15), alternative="greater").pvalue
    hi = stats.ttest_1samp(d, math.log(1.15), alternative="less").pvalue
    assert r["p"] == pytest.approx(max(lo, hi), rel=1e-12)
    assert r["equivalent"] == (r["ci"][0] > -math.log(1.15) and r["ci"][1] < math.log(1.15))
    # identical arms up to noise far below the margin: equivalent; a 30% gap: not
    same = A * np.exp(rng.normal(0, 0.005, len(A)))
    assert P.tost(same, A, margin_ratio=1.15)["equivalent"]
    assert not P.tost(A * 1.3, A * np.exp(rng.normal(0, 0.05, len(A))), margin_ratio=1.15)["equivalent"]
    # a non-significant difference is not equivalence: two seeds, large noise
    assert not P.tost([10.0, 14.0], [12.0, 11.0], margin_ratio=1.15)["equivalent"]


def test_intervals_cover_at_their_level_and_too_narrow_ones_fail():
    """2000 repetitions of 5 pairs: a 95% interval covers in [0.935, 0.965] (about 3 binomial sd of
    0.0049); the same interval at half its width covers about 0.73, far outside."""
    reps, n, truth = 2000, 5, 0.1
    d = rng.normal(truth, 0.2, size=(reps, n))
    cover, narrow = 0, 0
    for row in d:
        r = P.paired_t(np.exp(row), np.ones(n), level=0.95)
        cover += r.ci[0] <= truth <= r.ci[1]
        half = (r.ci[1] - r.ci[0]) / 4
        narrow += r.mean_diff - half <= truth <= r.mean_diff + half
    assert 0.935 <= cover / reps <= 0.965, cover / reps
    assert narrow / reps < 0.85
    # the Bonferroni level of one of three comparisons
    assert P.bonferroni_level(3) == pytest.approx(1 - 0.05 / 3)


def test_power_matches_simulation_and_the_seed_count_reaches_it():
    sd, effect, alpha = 0.1, 0.1, 0.05 / 3
    n = P.seeds_for(effect, sd, alpha, 0.8)
    assert P.power(n, effect, sd, alpha) >= 0.8 > P.power(n - 1, effect, sd, alpha)
    sims = 4000
    d = rng.normal(effect, sd, size=(sims, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    simulated = np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, n - 1))
    assert simulated == pytest.approx(P.power(n, effect, sd, alpha), abs=0.03)  # ~4 binomial sd
    assert P.power(8, 0.0, sd, 0.05) == pytest.approx(0.05, abs=1e-9)  # no effect: the size
    r = P.detectable_ratio(8, sd, alpha)
    assert P.power(8, math.log(r), sd, alpha) == pytest.approx(0.8, abs=1e-3)


def test_tost_power_matches_simulation():
    sd, margin, alpha = 0.1, math.log(1.15), 0.05
    n = P.seeds_for_tost(margin, sd, alpha, 0.8)
    sims = 4000
    d = rng.normal(0.0, sd, size=(sims, n))
    mean, se = d.mean(1), d.std(1, ddof=1) / math.sqrt(n)
    q = stats.t.ppf(1 - alpha, n - 1)
    simulated = np.mean((mean - q * se > -margin) & (mean + q * se < margin))
    assert simulated == pytest.approx(P.tost_power(n, margin, sd, alpha), abs=0.03)
    assert P.tost_power(n, margin, sd, alpha) >= 0.8


def test_sd_of_differences():
    assert P.sd_of_differences(1.0, 1.0) == pytest.approx(math.sqrt(2))
    assert P.sd_of_differences(1.0, 1.0, 1.0) == 0.0
    assert P.sd_of_differences(2.0, 1.0, -1.0) == pytest.approx(3.0)


def test_the_power_table_reads_the_spread_of_each_arm(tmp_path):
    import json
    import subprocess
    import sys

    fids = {"pra": [20.0, 22.0, 24.0], "latent_tf": [10.0, 10.5, 9.5]}
    metrics = {f"tiny-S/{m}/base/s{i}": {"fid": v} for m, vals in fids.items() for i, v in enumerate(vals)}
    metrics["tiny-S/pixel_tf/base/s0"] = {"fid": 5.0}  # one seed: no spread, left out
    metrics["ablation/settle"] = {"pra": {"fid": 22.0}}
    arms = P.arm_log_sds(metrics)
    assert sorted(arms) == ["tiny-S/latent_tf/base", "tiny-S/pra/base"]
    assert arms["tiny-S/pra/base"]["sd_log"] == pytest.approx(np.std(np.log(fids["pra"]), ddof=1))
    t = P.power_table(arms, alpha=0.05, m=3, target=0.8, ratios=[1.2], margin_ratio=1.15, correlation=0.0,
                      seeds=8)
    sd = math.sqrt(2) * arms["tiny-S/pra/base"]["sd_log"]  # the larger arm, uncorrelated
    assert t["sd_of_log_differences"] == pytest.approx(sd)
    assert t["seeds_per_ratio"]["1.2"] == P.seeds_for(math.log(1.2), sd, 0.05 / 3)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    out = subprocess.run([sys.executable, "-m", "pra", "power", "--spread", str(path), "--out", str(tmp_path / "p")],
                         capture_output=True, text=True, check=True).stdout
    assert "| 1.2 |" in out and json.loads((tmp_path / "p.json").read_text())["m"] == 3
