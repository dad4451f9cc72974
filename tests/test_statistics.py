"""Welch tests, Holm's correction, and the wording of ablation outcomes."""
import numpy as np
import pytest
from scipy import stats

from pra.statistics import holm, hypothesis_outcome, verdict, welch


def test_welch_matches_scipy_and_its_interval_is_consistent():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 6), rng.normal(1, 2, 5)
    c = welch(a, b, names=("a", "b"), metric="fid")
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert c.ci[0] < c.diff < c.ci[1]
    assert (c.ci[0] > 0 or c.ci[1] < 0) == (c.p < 0.05)  # the 95% interval excludes 0 iff p < 0.05


def test_holm_known_example():
    # p = (0.01, 0.04, 0.03, 0.005): sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1, made monotone
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, 0.02]) == [None, 0.02]


def test_multiplicity_removes_a_call_a_single_test_would_make():
    """11 comparisons each at p about 0.01: alone each is 'clearly' different, after Holm none is."""
    comps = [welch([7.0, 7.1, 7.2, 7.3, 7.4], [7.3, 7.4, 7.5, 7.6, 7.7], names=(f"v{i}", "pra"), metric="fid")
             for i in range(11)]
    assert all(0.005 < c.p < 0.05 for c in comps)
    assert verdict(comps[0]).startswith("clearly lower")
    for c, p in zip(comps, holm([c.p for c in comps])):
        c.p_holm = p
    assert all(verdict(c).startswith("not clearly different") for c in comps)


def test_one_seed_is_no_test_and_overlapping_seeds_are_not_different():
    one = welch([5.0], [9.0], names=("a", "b"), metric="fid")
    assert one.p is None and verdict(one).startswith("no test") and "untested" in hypothesis_outcome(one, "lower")
    same = welch([7.0, 7.5, 8.0, 7.2, 7.8], [7.1, 7.9, 7.3, 7.6, 8.1], names=("a", "b"), metric="fid")
    assert verdict(same).startswith("not clearly different")
    assert hypothesis_outcome(same, "lower") == "not supported: not clearly different"
    assert hypothesis_outcome(same, "equal").startswith("consistent")
    far = welch([1.0, 1.1, 0.9, 1.05, 0.95], [3.0, 3.1, 2.9, 3.05, 2.95], names=("a", "b"), metric="fid")
    assert hypothesis_outcome(far, "lower") == "supported"
    assert hypothesis_outcome(far, "higher").startswith("contradicted")
