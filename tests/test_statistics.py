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
    assert hypothesis_outcome(same, "equal").startswith("not shown")  # never "consistent" from a p-value
    far = welch([1.0, 1.1, 0.9, 1.05, 0.95], [3.0, 3.1, 2.9, 3.05, 2.95], names=("a", "b"), metric="fid")
    assert hypothesis_outcome(far, "lower") == "supported"
    assert hypothesis_outcome(far, "higher").startswith("contradicted")


def _variant(name, **metrics):
    return {"name": name, "method": name, "overrides": {},
            "metrics": {k: {"mean": float(np.mean(v)), "values": list(v), "n": len(v),
                            "std": float(np.std(v, ddof=1)) if len(v) > 1 else None} for k, v in metrics.items()}}


def test_ablation_tests_one_holm_family_with_declared_hypotheses():
    from pra.ablation import outcome, tests
    from pra.config import ExperimentConfig

    a = ExperimentConfig().replace(ablations=[{
        "name": "s", "scale": "tiny-S", "seeds": [1, 2, 3, 4, 5],
        "variants": [{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"}],
        "hypotheses": [{"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "lower"},
                       {"id": "H2", "metric": "gap_inputs_pra_mmd2_excess", "variant": "pra", "reference": "pra",
                        "reference_metric": "gap_inputs_teacher_forcing_mmd2_excess", "expect": "lower"}]}]).ablations[0]
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3, 4, 5], "variants": [
        _variant("pra", fid=[5.0, 5.2, 4.9, 5.1, 5.0], gap_inputs_pra_mmd2_excess=[0.01, 0.012, 0.011, 0.009, 0.01],
                 gap_inputs_teacher_forcing_mmd2_excess=[0.011, 0.01, 0.012, 0.01, 0.009]),
        _variant("latent_tf", fid=[24.0, 30.0, 20.0, 26.0, 22.0])]}
    comps, hyps = tests(summary, a)
    assert len(comps) == 1 and len(hyps) == 2
    # three tests in one family: each Holm-adjusted p is at least its raw p, the smallest times 3
    ps = [comps[0]["p"], hyps[0]["comparison"]["p"], hyps[1]["comparison"]["p"]]
    adj = [comps[0]["p_holm"], hyps[0]["comparison"]["p_holm"], hyps[1]["comparison"]["p_holm"]]
    assert min(adj) == pytest.approx(min(1.0, 3 * min(ps))) and all(q >= p for p, q in zip(ps, adj))
    assert hyps[0]["outcome"] == "supported"
    assert hyps[1]["comparison"]["a"] == "pra: gap_inputs_pra_mmd2_excess"
    assert hyps[1]["outcome"] == "not supported: not clearly different"
    summary.update(comparisons=comps, hypotheses=hyps)
    lines = outcome(summary)
    assert lines[0].startswith("H1 (") and "supported" in lines[0]
    assert any(ln.startswith("fid: latent_tf vs pra: clearly higher (worse)") for ln in lines), lines
