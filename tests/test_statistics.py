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


def _ablation(**kw):
    from pra.config import ExperimentConfig

    base = {"name": "s", "scale": "tiny-S", "seeds": [1, 2, 3, 4, 5],
            "variants": [{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"},
                         {"name": "pixel_noise", "method": "pixel_noise"}]}
    return ExperimentConfig().replace(ablations=[{**base, **kw}]).ablations[0]


def test_welch_holm_family_counts_each_distinct_comparison_once():
    from pra.ablation import outcome
    from pra.analysis import analyse

    a = _ablation(diagnostics=True, hypotheses=[
        {"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "lower"},
        {"id": "H2", "metric": "gap_inputs_pra_mmd2_excess", "variant": "pra", "reference": "pra",
         "reference_metric": "gap_inputs_teacher_forcing_mmd2_excess", "expect": "lower"}])
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3, 4, 5], "variants": [
        _variant("pra", fid=[5.0, 5.2, 4.9, 5.1, 5.0], gap_inputs_pra_mmd2_excess=[0.01, 0.012, 0.011, 0.009, 0.01],
                 gap_inputs_teacher_forcing_mmd2_excess=[0.011, 0.01, 0.012, 0.01, 0.009]),
        _variant("latent_tf", fid=[24.0, 30.0, 20.0, 26.0, 22.0]),
        _variant("pixel_noise", fid=[9.0, 12.0, 8.0, 11.0, 10.0])]}
    comps, hyps, desc = analyse(summary, a)
    # latent_tf vs pra on fid is H1 already (in the other order): only pixel_noise vs pra is added
    assert [(c["a"], c["b"]) for c in comps] == [("pixel_noise", "pra")] and len(hyps) == 2 and desc["m"] == 3
    ps = [comps[0]["p"], hyps[0]["comparison"]["p"], hyps[1]["comparison"]["p"]]
    adj = [comps[0]["p_holm"], hyps[0]["comparison"]["p_holm"], hyps[1]["comparison"]["p_holm"]]
    assert min(adj) == pytest.approx(min(1.0, 3 * min(ps))) and all(q >= p for p, q in zip(ps, adj))
    assert hyps[0]["outcome"] == "supported"
    assert hyps[1]["comparison"]["a"] == "pra: gap_inputs_pra_mmd2_excess"
    assert hyps[1]["outcome"].startswith("not supported: not clearly different")
    summary.update(comparisons=comps, hypotheses=hyps)
    lines = outcome(summary)
    assert lines[0].startswith("H1 (") and "supported" in lines[0]
    assert any(ln.startswith("fid: pixel_noise vs pra: clearly higher (worse)") for ln in lines), lines


def test_a_reading_that_flips_under_pairing_does_not_hold_up():
    """Arms with a large shared seed effect: Welch (registered) sees nothing, the paired sensitivity analysis
    sees a clear ratio, so the hypothesis is worded as not holding up across analyses."""
    from pra.analysis import analyse

    a = _ablation(variants=[{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"}],
                  hypotheses=[{"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf",
                               "expect": "lower"}])
    seed_effect = np.array([5.0, 10.0, 20.0, 40.0, 80.0])
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3, 4, 5], "variants": [
        _variant("pra", fid=list(seed_effect * [0.90, 0.91, 0.89, 0.90, 0.905])),
        _variant("latent_tf", fid=list(seed_effect))]}
    _, hyps, _ = analyse(summary, a)
    h = hyps[0]
    assert h["comparison"]["p_holm"] > 0.05 and h["sensitivity"]["comparison"]["p"] < 0.001
    assert h["outcome"].startswith("not supported") and "does not hold up across analyses (paired: supported)" \
        in h["outcome"]


def test_paired_analysis_matches_scipy_and_reads_equal_only_from_tost():
    from scipy import stats

    from pra.analysis import analyse

    a = _ablation(analysis="paired", equivalence_margin=1.15, hypotheses=[
        {"id": "C1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "lower"},
        {"id": "C2", "metric": "fid", "variant": "pixel_noise", "reference": "latent_tf", "expect": "equal"}])
    rng = np.random.default_rng(0)
    base = np.exp(rng.normal(np.log(20), 0.1, 8))
    pra, tf = base * np.exp(rng.normal(np.log(0.8), 0.02, 8)), base
    close = base * np.exp(rng.normal(0.0, 0.01, 8))  # within 1.15 by far
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": list(range(8)), "variants": [
        _variant("pra", fid=list(pra)), _variant("latent_tf", fid=list(tf)), _variant("pixel_noise", fid=list(close))]}
    comps, hyps, desc = analyse(summary, a)
    assert desc["m"] == 2 and desc["level"] == pytest.approx(0.975)
    c1 = hyps[0]["comparison"]
    assert c1["p"] == pytest.approx(stats.ttest_rel(np.log(pra), np.log(tf)).pvalue, rel=1e-9)
    want = stats.ttest_rel(np.log(pra), np.log(tf)).confidence_interval(0.975)
    assert np.exp(want.low) == pytest.approx(c1["ratio_ci"][0]) and np.exp(want.high) == pytest.approx(c1["ratio_ci"][1])
    assert hyps[0]["outcome"] == "supported"
    assert hyps[1]["outcome"].startswith("supported: equivalent within a ratio of 1.15")
    eq = hyps[1]["equivalence"]  # TOST at the family's level alpha/m, its interval at 1 - 2 alpha/m
    assert eq["alpha"] == pytest.approx(0.025) and eq["level"] == pytest.approx(0.95)
    # a 1.5x difference with the same noise is not equal; a noisy small sample shows nothing either way
    summary["variants"][2] = _variant("pixel_noise", fid=list(base * 1.5 * np.exp(rng.normal(0, 0.01, 8))))
    assert analyse(summary, a)[1][1]["outcome"] == "contradicted: clearly different"
    summary["variants"][2] = _variant("pixel_noise", fid=list(base * np.exp(rng.normal(0, 0.4, 8))))
    assert analyse(summary, a)[1][1]["outcome"].startswith("not shown")
    # the other comparisons are estimates (no p used for a verdict): pixel_noise vs pra is not a hypothesis
    assert [c["role"] for c in comps] == ["estimate"] * len(comps) and len(comps) == 1
    assert "TOST within a ratio of 1.15" in desc["text"] and desc["equivalence_margin"] == 1.15
    # without a hypothesis that expects equality the margin is not part of the analysis and is not named
    a_lower = _ablation(analysis="paired", equivalence_margin=1.15, hypotheses=[
        {"id": "C1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "lower"}])
    _, hyps, desc = analyse(summary, a_lower)
    assert desc["equivalence_margin"] is None and "TOST" not in desc["text"] and "1.15" not in desc["text"]
    assert hyps[0]["equivalence"] is None and hyps[0]["comparison"]["p_sign_flip"] is not None


def test_ill_posed_arms_are_never_interpreted():
    from pra.analysis import NOT_INTERPRETABLE, analyse
    from pra.config import ConfigError

    variants = [{"name": "pra", "method": "pra"}, {"name": "free", "method": "free_rollout"}]
    hyp = [{"id": "H3", "metric": "fid", "variant": "pra", "reference": "free", "expect": "equal"}]
    with pytest.raises(ConfigError, match=r"hypotheses\[0\]\.reference.*another image"):
        _ablation(analysis="paired", variants=variants, hypotheses=hyp)
    a = _ablation(variants=variants, hypotheses=hyp)  # the registered welch_holm family keeps it
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3], "variants": [
        _variant("pra", fid=[5.0, 5.1, 5.2]), _variant("free", fid=[5.0, 5.1, 5.3])]}
    summary["variants"][1]["method"] = "free_rollout"
    _, hyps, desc = analyse(summary, a)
    assert hyps[0]["outcome"] == NOT_INTERPRETABLE and hyps[0]["comparison"]["p_holm"] is not None and desc["m"] == 1
    assert hyps[0]["sensitivity"]["outcome"] == NOT_INTERPRETABLE
    with pytest.raises(ConfigError, match="at most 3"):
        _ablation(analysis="paired", hypotheses=[
            {"id": f"C{i}", "metric": "fid", "variant": "pra", "reference": "latent_tf"} for i in range(4)])


def test_pairs_are_matched_by_seed_not_by_position():
    """A metric missing for one seed of one arm: the paired test uses the common seeds, matched by seed; matching
    by list position would pair seed 2 of one arm with seed 3 of the other and find a different answer."""
    from pra.analysis import analyse

    a = _ablation(variants=[{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"}],
                  analysis="paired", hypotheses=[{"id": "C1", "metric": "fid", "variant": "pra",
                                                  "reference": "latent_tf", "expect": "lower"}])
    seed_effect = {1: 5.0, 2: 10.0, 3: 20.0, 4: 40.0, 5: 80.0}
    tf = _variant("latent_tf", fid=[seed_effect[s] for s in (1, 3, 4, 5)])  # seed 2 missing
    tf["metrics"]["fid"]["seeds"] = [1, 3, 4, 5]
    pra = _variant("pra", fid=[0.9 * seed_effect[s] * f for s, f in zip((1, 2, 3, 4, 5), (1.0, 1.01, 0.99, 1.0, 1.005))])
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3, 4, 5], "variants": [pra, tf]}
    _, hyps, _ = analyse(summary, a)
    c = hyps[0]["comparison"]
    assert c["n"] == 4 and c["ratio"] == pytest.approx(0.9, rel=0.01) and hyps[0]["outcome"] == "supported"


def test_a_repeated_hypothesis_counts_once_and_ill_posed_comparisons_are_not_read():
    from pra.ablation import outcome
    from pra.analysis import NOT_INTERPRETABLE, analyse

    a = _ablation(variants=[{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"},
                            {"name": "free", "method": "free_rollout"}],
                  hypotheses=[{"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "lower"},
                              {"id": "H2", "metric": "fid", "variant": "latent_tf", "reference": "pra",
                               "expect": "higher"}])
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3, 4, 5], "variants": [
        _variant("pra", fid=[5.0, 5.2, 4.9, 5.1, 5.0]), _variant("latent_tf", fid=[24.0, 30.0, 20.0, 26.0, 22.0]),
        _variant("free_rollout", fid=[80.0, 82.0, 81.0, 83.0, 80.5])]}
    summary["variants"][2]["name"] = "free"
    comps, hyps, desc = analyse(summary, a)
    assert desc["m"] == 2  # H1, and free vs pra; H2 is H1 again
    assert hyps[1]["outcome"].startswith("the same comparison as H1 (counted once)")
    assert comps[0]["reading"] == NOT_INTERPRETABLE and comps[0]["p_holm"] is not None
    summary.update(comparisons=comps, hypotheses=hyps)
    assert any(ln == f"fid: free vs pra: {NOT_INTERPRETABLE}." for ln in outcome(summary))


def test_the_sensitivity_analysis_is_holm_corrected_like_the_registered_one():
    from pra.analysis import analyse

    a = _ablation(hypotheses=[{"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf",
                               "expect": "lower"}])
    rng = np.random.default_rng(1)
    base = np.exp(rng.normal(3, 0.5, 5))
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [1, 2, 3, 4, 5], "variants": [
        _variant("pra", fid=list(base * 0.9 * np.exp(rng.normal(0, 0.02, 5)))), _variant("latent_tf", fid=list(base)),
        _variant("pixel_noise", fid=list(base * np.exp(rng.normal(0, 0.02, 5))))]}
    _, hyps, desc = analyse(summary, a)
    s = hyps[0]["sensitivity"]
    assert desc["m"] == 2 and s["p_holm"] >= s["comparison"]["p"] and "Holm" in s["test"]


def test_the_outcome_words_a_single_run_by_its_interval_and_never_reads_an_ill_posed_arm():
    """With one seed: a hypothesis says why it is untested and gives the measured values; the accumulation line
    gives each run's interval and the reading of it (not a permutation p that can disagree with it), and an
    ill-posed arm's excess (built near 0) is not read."""
    from pra.ablation import outcome
    from pra.analysis import analyse

    a = _ablation(analysis="paired", seeds=[0], hypotheses=[
        {"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "equal"}],
        variants=[{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"},
                  {"name": "free", "method": "free_rollout"}])
    acc = lambda x, lo, hi, word: {"excess": x, "ci": [lo, hi], "reading": word}  # noqa: E731
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": [0], "variants": [
        {**_variant("pra", fid=[4.5], acc_region_excess=[0.009]),
         "accumulation_first_seed": acc(0.009, -0.013, 0.028, "not clearly different from 0")},
        {**_variant("latent_tf", fid=[22.0], acc_region_excess=[0.067]),
         "accumulation_first_seed": acc(0.067, 0.027, 0.107, "clearly positive")},
        {**_variant("free", fid=[23.0], acc_region_excess=[0.0]), "method": "free_rollout",
         "accumulation_first_seed": acc(0.0, -0.001, 0.001, "not clearly different from 0")}]}
    comps, hyps, desc = analyse(summary, a)
    lines = outcome({**summary, "comparisons": comps, "hypotheses": hyps, "analysis": desc})
    assert lines[0].endswith("untested: 1 paired seed (a paired test needs 2 or more) (4.5 vs 22, measured values, "
                             "not a verdict).")
    last = lines[-1]
    assert "pra +0.009 [-0.013, +0.028]: not clearly different from 0" in last
    assert "latent_tf +0.067 [+0.027, +0.11]: clearly positive" in last
    assert "free not read (ill-posed arm" in last and "swap p" not in last


def test_declared_estimates_are_estimated_once_and_never_tested():
    """An ablation's declared estimates (two arms that separate one effect) get a paired interval at the family's
    level beside the reference comparisons, are worded as estimates with what they separate, repeat no other
    comparison, and belong to the paired analysis only."""
    from scipy import stats

    from pra.ablation import outcome
    from pra.analysis import analyse
    from pra.config import ConfigError
    from pra.report.tables import tests_table

    variants = [{"name": "pra", "method": "pra"}, {"name": "latent_tf", "method": "latent_tf"},
                {"name": "pra_t1", "method": "pra", "overrides": {"method": {"t_min": 1.0}}},
                {"name": "free", "method": "free_rollout"}]
    hyp = [{"id": "H1", "metric": "fid", "variant": "pra", "reference": "latent_tf", "expect": "lower"}]
    est = [{"variant": "latent_tf", "reference": "pra_t1", "metric": "fid", "why": "the inputs alone"}]
    a = _ablation(analysis="paired", seeds=list(range(6)), variants=variants, hypotheses=hyp, estimates=est)
    rng = np.random.default_rng(1)
    base = np.exp(rng.normal(np.log(10), 0.1, 6))
    tf, t1 = base * 4, base * np.exp(rng.normal(np.log(1.3), 0.05, 6))
    summary = {"reference": "pra", "primary_metric": "fid", "seeds": list(range(6)), "variants": [
        _variant("pra", fid=list(base)), _variant("latent_tf", fid=list(tf)), _variant("pra_t1", fid=list(t1)),
        {**_variant("free", fid=list(base * 2)), "method": "free_rollout"}]}
    comps, hyps, desc = analyse(summary, a)
    declared = [c for c in comps if "declared" in c]
    assert len(declared) == 1 and desc["m"] == 1  # an estimate does not enter the confirmatory family
    d = declared[0]
    assert (d["a"], d["b"], d["role"], d["declared"]["why"]) == ("latent_tf", "pra_t1", "estimate", "the inputs alone")
    want = stats.ttest_rel(np.log(tf), np.log(t1)).confidence_interval(desc["level"])
    assert d["ratio_ci"] == pytest.approx([np.exp(want.low), np.exp(want.high)])
    lines = outcome({**summary, "comparisons": comps, "hypotheses": hyps, "analysis": desc})
    assert any(x.startswith("fid: latent_tf vs pra_t1 (declared estimate: the inputs alone)") for x in lines)
    rows = tests_table({"name": "s", **summary, "comparisons": comps, "hypotheses": hyps, "analysis": desc}).frame
    row = rows[rows["test"] == "declared estimate"].iloc[0]
    assert row["p"] == "— (estimate)" and row["reading"] == "estimate, not a test (declared: the inputs alone)"
    # one seed: the measured values, named as the declared estimate
    one = {**summary, "seeds": [0], "variants": [
        {**v, "metrics": {"fid": {**v["metrics"]["fid"], "values": v["metrics"]["fid"]["values"][:1], "n": 1}}}
        for v in summary["variants"]]}
    comps1, hyps1, desc1 = analyse(one, a)
    line = [x for x in outcome({**one, "comparisons": comps1, "hypotheses": hyps1, "analysis": desc1})
            if "pra_t1 (declared" in x]
    assert line and "too few pairs for an interval" in line[0]
    # each distinct comparison once, real arms only, never an ill-posed arm, the paired analysis only
    bad = [(r"estimates\[0\]': latent_tf vs pra on fid repeats hypothesis H1", [{"variant": "latent_tf",
                                                                               "reference": "pra"}]),
           (r"estimates\[0\]': pra_t1 vs pra on fid is already estimated as a comparison with the reference",
            [{"variant": "pra_t1", "reference": "pra"}]),
           (r"estimates\[1\]': pra vs pra_t1 on kid repeats estimates\[0\]",
            [{"variant": "pra_t1", "reference": "pra", "metric": "kid"},
             {"variant": "pra", "reference": "pra_t1", "metric": "kid"}]),
           (r"estimates\[0\]\.reference': 'free' trains with free_rollout.*another image",
            [{"variant": "pra_t1", "reference": "free"}]),
           (r"estimates\[0\]\.variant': 'nope' is not a variant", [{"variant": "nope", "reference": "pra_t1"}])]
    for match, e in bad:
        with pytest.raises(ConfigError, match=match):
            _ablation(analysis="paired", variants=variants, hypotheses=hyp, estimates=e)
    with pytest.raises(ConfigError, match=r"estimates': declared estimates belong to the paired analysis"):
        _ablation(variants=variants, hypotheses=hyp, estimates=est)
    # the reference resolved as the analysis resolves it: in a one-method ablation without a 'pra' variant, the
    # only variant without overrides
    one_method = [{"name": "base", "method": "pra"}, {"name": "t1", "method": "pra", "overrides": {"method": {"t_min": 1.0}}},
                  {"name": "t2", "method": "pra", "overrides": {"method": {"t_min": 0.2}}}]
    with pytest.raises(ConfigError, match=r"t1 vs base on fid is already estimated as a comparison with the reference "
                                          r"\(base\)"):
        _ablation(analysis="paired", variants=one_method, estimates=[{"variant": "t1", "reference": "base"}])
    a = _ablation(analysis="paired", variants=one_method, estimates=[{"variant": "t1", "reference": "t2"}])
    two = {"reference": "base", "primary_metric": "fid", "seeds": [0, 1], "variants": [
        _variant("base", fid=[5.0, 5.2]), _variant("t1", fid=[6.0, 6.1]), _variant("t2", fid=[5.5, 5.4])]}
    comps, _, _ = analyse(two, a)
    assert [(c["a"], c["b"], "declared" in c) for c in comps] == [("t1", "base", False), ("t2", "base", False),
                                                                  ("t1", "t2", True)]
