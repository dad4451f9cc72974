"""The registered analysis of an ablation: which comparisons form its family, the test each gets, and the
wording of each hypothesis.

An ablation registers one of two analyses (`ablations[].analysis`):

* `welch_holm`: Welch's t-test on the raw metric for every comparison, Holm's correction over the family
  (the hypotheses, then every variant vs the reference on the primary metric). A paired t-test on log values
  (ratio metrics) is computed beside it as a labelled sensitivity analysis, a deviation from the
  registration: a hypothesis whose reading differs between the two "does not hold up across analyses".
* `paired`: the declared hypotheses are the confirmatory family (m of them): a paired t-test over seeds,
  on log values for ratio metrics (FID, KID, IS), at the Bonferroni level alpha/m; "equal" is read only from
  an equivalence test (TOST) against `equivalence_margin`, a ratio; the exact sign-flip p-value is shown as a
  sensitivity check (with n pairs it cannot fall below 2/2^n). Every other variant vs the reference is an
  estimate with a Bonferroni-level interval, not a test.

Each distinct comparison (the same two arms and metrics, in either order) enters the family once. A
hypothesis with an ill-posed arm (a method whose inputs belong to another image than its target,
pra.config.ILL_POSED_METHODS) keeps its place in the family it was registered in and reads "not
interpretable (ill-posed reference)".
"""
from __future__ import annotations

from pra.config import ILL_POSED_METHODS, AblationConfig
from pra.paired import paired_t, tost
from pra.statistics import Comparison, holm, hypothesis_outcome, welch

# metrics compared as ratios (on log values), when every value is positive
RATIO_METRICS = ("fid", "kid", "is")
NOT_INTERPRETABLE = "not interpretable (ill-posed reference)"


def metric_values(summary: dict, name: str, key: str) -> list[float] | None:
    for v in summary["variants"]:
        if v["name"] == name and key in v["metrics"]:
            return v["metrics"][key]["values"]
    return None


def on_log_scale(metric: str, *samples) -> bool:
    return metric in RATIO_METRICS and all(x > 0 for s in samples for x in s)


def _key(a: str, ma: str, b: str, mb: str) -> frozenset:
    return frozenset({(a, ma), (b, mb)})


def family(summary: dict, ablation: AblationConfig) -> tuple[list[dict], list[dict]]:
    """(hypotheses, other comparisons): each a dict with the arms, metrics and values; a comparison that
    repeats a hypothesis (or an earlier comparison) is left out, so each distinct comparison appears once."""
    seen, hyps, comps = set(), [], []
    methods = {v["name"]: v["method"] for v in summary["variants"]}
    for h in ablation.hypotheses:
        ref_metric = h.reference_metric or h.metric
        a, b = metric_values(summary, h.variant, h.metric), metric_values(summary, h.reference, ref_metric)
        ill = sorted({methods.get(h.variant), methods.get(h.reference)} & set(ILL_POSED_METHODS))
        hyps.append({"id": h.id, "statement": h.statement, "metric": h.metric, "reference_metric": ref_metric,
                     "variant": h.variant, "reference": h.reference, "expect": h.expect, "values": (a, b),
                     "ill_posed": ill,
                     "names": (h.variant, h.reference) if ref_metric == h.metric else
                     (f"{h.variant}: {h.metric}", f"{h.reference}: {ref_metric}")})
        seen.add(_key(h.variant, h.metric, h.reference, ref_metric))
    ref, metric = summary.get("reference"), summary["primary_metric"]
    if ref is not None:
        for v in summary["variants"]:
            k = _key(v["name"], metric, ref, metric)
            a, b = metric_values(summary, v["name"], metric), metric_values(summary, ref, metric)
            if v["name"] == ref or k in seen or a is None or b is None:
                continue
            seen.add(k)
            comps.append({"names": (v["name"], ref), "metric": metric, "values": (a, b)})
    return hyps, comps


def _paired(values, names, metric: str, level: float):
    a, b = values
    if len(a) != len(b):
        return None
    return paired_t(a, b, log=on_log_scale(metric, a, b), level=level, names=names, metric=metric)


def paired_outcome(t, expect: str, alpha: float, equivalence: dict | None) -> str:
    """The reading of a paired test at (Bonferroni) level alpha: 'supported', 'contradicted', 'not supported',
    or for 'equal' 'supported: equivalent within the margin' only from TOST."""
    if t is None or t.p is None:
        return "untested (fewer than 2 paired seeds)"
    called = t.p < alpha
    if expect == "equal":
        if equivalence and equivalence.get("equivalent"):
            return f"supported: equivalent within a ratio of {equivalence['margin_ratio']:g} (TOST)"
        if called:
            return "contradicted: clearly different"
        return ("not shown: neither clearly different nor shown equivalent"
                + ("" if equivalence else " (no equivalence margin on this metric's scale)"))
    if not called:
        return "not supported: not clearly different"
    return "supported" if (t.mean_diff < 0) == (expect == "lower") else "contradicted: clearly in the other direction"


def _verdict_word(outcome: str) -> str:
    return outcome.split(":")[0].split(" (")[0]


def analyse(summary: dict, ablation: AblationConfig) -> tuple[list[dict], list[dict], dict]:
    """(comparisons, hypotheses, analysis description) as the ablation registered them."""
    hyps, comps = family(summary, ablation)
    alpha = ablation.alpha
    if ablation.analysis == "paired":
        m = max(1, len(hyps))
        level = 1 - alpha / m
        out_h = []
        for h in hyps:
            a, b = h["values"]
            base = {k: h[k] for k in ("id", "statement", "metric", "reference_metric", "variant", "reference",
                                      "expect")}
            if a is None or b is None:
                out_h.append({**base, "comparison": None, "outcome": f"not measured: no {h['metric']!r} of "
                              f"{h['variant']} or {h['reference_metric']!r} of {h['reference']}"})
                continue
            t = _paired((a, b), h["names"], h["metric"], level)
            eq = None
            if h["expect"] == "equal" and t is not None and t.log and t.n >= 2:
                eq = tost(a, b, margin_ratio=ablation.equivalence_margin, alpha=alpha / m)
            out = paired_outcome(t, h["expect"], alpha / m, eq)
            if h["ill_posed"]:
                out = NOT_INTERPRETABLE
            out_h.append({**base, "comparison": t.to_dict() if t else None, "equivalence": eq, "outcome": out,
                          "test": "paired t" + (" on log values" if t is not None and t.log else "")})
        out_c = []
        for c in comps:
            t = _paired(c["values"], c["names"], c["metric"], level)
            if t is not None:
                out_c.append({**t.to_dict(), "role": "estimate"})
        desc = {"analysis": "paired", "alpha": alpha, "m": m, "level": level,
                "equivalence_margin": ablation.equivalence_margin,
                "text": (f"Registered analysis: paired t-test over seeds (log values for ratio metrics) for each of "
                         f"the m = {m} declared hypotheses at the Bonferroni level alpha/m = {alpha / m:.3g}, with "
                         f"{level:.1%} intervals; 'equal' only from TOST within a ratio of "
                         f"{ablation.equivalence_margin:g}; sign-flip p is a sensitivity check. Other rows are "
                         f"estimates with {level:.1%} intervals, not tests.")}
        return out_c, out_h, desc

    # welch_holm: the registered unpaired analysis, with the paired one as a labelled sensitivity analysis
    tested = []
    for h in hyps:
        a, b = h["values"]
        h["welch"] = None if a is None or b is None else welch(a, b, names=h["names"], metric=h["metric"])
        tested += [h["welch"]] if h["welch"] is not None else []
    comp_tests = [welch(c["values"][0], c["values"][1], names=c["names"], metric=c["metric"]) for c in comps]
    fam = tested + comp_tests
    for c, p in zip(fam, holm([c.p for c in fam])):
        c.p_holm = p
    m = sum(c.p is not None for c in fam)
    out_h = []
    for h in hyps:
        base = {k: h[k] for k in ("id", "statement", "metric", "reference_metric", "variant", "reference", "expect")}
        if h["welch"] is None:
            out_h.append({**base, "comparison": None, "outcome": f"not measured: no {h['metric']!r} of "
                          f"{h['variant']} or {h['reference_metric']!r} of {h['reference']}"})
            continue
        out = hypothesis_outcome(h["welch"], h["expect"], alpha)
        sens = _paired(h["values"], h["names"], h["metric"], 1 - alpha / max(m, 1))
        sens_out = paired_outcome(sens, h["expect"], alpha / max(m, 1), None) if sens is not None else None
        if h["ill_posed"]:
            out = NOT_INTERPRETABLE
        elif sens_out is not None and not sens_out.startswith("untested") and \
                _verdict_word(sens_out) != _verdict_word(out):
            out = f"{out}; does not hold up across analyses (paired: {_verdict_word(sens_out)})"
        out_h.append({**base, "comparison": h["welch"].to_dict(), "outcome": out, "test": "Welch, Holm",
                      "sensitivity": {"test": "paired t (deviation from the registration), Bonferroni over the "
                                              "family", "comparison": sens.to_dict() if sens else None,
                                      "outcome": sens_out}})
    desc = {"analysis": "welch_holm", "alpha": alpha, "m": m,
            "text": (f"Registered analysis: Welch's t-test over training seeds on the raw metric, Holm's correction "
                     f"over the m = {m} distinct comparisons of this table (each once). Sensitivity, a deviation "
                     f"from the registration: paired t over seeds (log values for ratio metrics), Bonferroni "
                     f"over the same family; a hypothesis whose reading differs between the two does not hold up "
                     f"across analyses.")}
    return [c.to_dict() for c in comp_tests], out_h, desc


def registered_comparison(c: dict) -> Comparison | None:
    """A Welch comparison dict back as a Comparison (for its sentence), None for paired ones."""
    return Comparison(**c) if c is not None and "diff" in c else None
