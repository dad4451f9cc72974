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
  estimate with a Bonferroni-level interval, not a test, and so is each comparison the ablation declares in
  `estimates` (two arms that separate one effect, say).

Each distinct comparison (the same two arms and metrics, in either order) enters the family once. A
hypothesis with an ill-posed arm (a method whose inputs belong to another image than its target,
pra.config.ILL_POSED_METHODS) keeps its place in the family it was registered in and reads "not
interpretable (ill-posed arm: its inputs belong to another image than its target)".
"""
from __future__ import annotations

from pra.config import ILL_POSED_METHODS, AblationConfig
from pra.paired import paired_t, tost
from pra.statistics import Comparison, holm, hypothesis_outcome, welch

# metrics compared as ratios (on log values), when every value is positive
RATIO_METRICS = ("fid", "kid", "is")
NOT_INTERPRETABLE = "not interpretable (ill-posed arm: its inputs belong to another image than its target)"


def metric_values(summary: dict, name: str, key: str) -> list[float] | None:
    for v in summary["variants"]:
        if v["name"] == name and key in v["metrics"]:
            return v["metrics"][key]["values"]
    return None


def metric_seeds(summary: dict, name: str, key: str) -> list[int] | None:
    """The training seeds of metric_values, in the same order (all the ablation's seeds where none is missing)."""
    for v in summary["variants"]:
        if v["name"] == name and key in v["metrics"]:
            m = v["metrics"][key]
            return m.get("seeds", list(summary["seeds"])[:len(m["values"])])
    return None


def on_log_scale(*metrics: str) -> bool:
    """Ratio metrics are compared on log values; the scale is fixed by the metrics, never by the data."""
    return all(m in RATIO_METRICS for m in metrics)


def aligned(values, seeds) -> tuple[list, list, list]:
    """The two arms' values on their common seeds, in seed order (pairs are matched by seed, never by position)."""
    (a, b), (sa, sb) = values, seeds
    da, db = dict(zip(sa, a)), dict(zip(sb, b))
    common = [x for x in sa if x in db]
    return [da[x] for x in common], [db[x] for x in common], common


def _key(a: str, ma: str, b: str, mb: str) -> frozenset:
    return frozenset({(a, ma), (b, mb)})


def family(summary: dict, ablation: AblationConfig) -> tuple[list[dict], list[dict]]:
    """(hypotheses, other comparisons): each a dict with the arms, metrics and values; a comparison that
    repeats a hypothesis (or an earlier comparison) is left out, so each distinct comparison appears once."""
    seen: dict = {}
    hyps, comps = [], []
    methods = {v["name"]: v["method"] for v in summary["variants"]}
    for h in ablation.hypotheses:
        ref_metric = h.reference_metric or h.metric
        a, b = metric_values(summary, h.variant, h.metric), metric_values(summary, h.reference, ref_metric)
        ill = sorted({methods.get(h.variant), methods.get(h.reference)} & set(ILL_POSED_METHODS))
        k = _key(h.variant, h.metric, h.reference, ref_metric)
        hyps.append({"id": h.id, "statement": h.statement, "metric": h.metric, "reference_metric": ref_metric,
                     "variant": h.variant, "reference": h.reference, "expect": h.expect, "values": (a, b),
                     "seeds": (metric_seeds(summary, h.variant, h.metric),
                               metric_seeds(summary, h.reference, ref_metric)),
                     "ill_posed": ill, "duplicate_of": seen.get(k),
                     "names": (h.variant, h.reference) if ref_metric == h.metric else
                     (f"{h.variant}: {h.metric}", f"{h.reference}: {ref_metric}")})
        seen.setdefault(k, h.id)
    ref, metric = summary.get("reference"), summary["primary_metric"]
    if ref is not None:
        for v in summary["variants"]:
            k = _key(v["name"], metric, ref, metric)
            a, b = metric_values(summary, v["name"], metric), metric_values(summary, ref, metric)
            if v["name"] == ref or k in seen or a is None or b is None:
                continue
            seen[k] = v["name"]
            comps.append({"names": (v["name"], ref), "metric": metric, "values": (a, b),
                          "seeds": (metric_seeds(summary, v["name"], metric), metric_seeds(summary, ref, metric)),
                          "ill_posed": sorted({methods.get(v["name"]), methods.get(ref)} & set(ILL_POSED_METHODS))})
    for e in ablation.estimates if ablation.analysis == "paired" else ():  # declared: estimated, never tested
        k = _key(e.variant, e.metric, e.reference, e.metric)
        if k in seen:  # pra.config's check refuses it: each distinct comparison once, and a declared one never lost
            raise ValueError(f"declared estimate {e.variant} vs {e.reference} on {e.metric} repeats a comparison "
                             f"the family already makes ({seen[k]})")
        a, b = metric_values(summary, e.variant, e.metric), metric_values(summary, e.reference, e.metric)
        if a is None or b is None:
            continue
        seen[k] = e.variant
        comps.append({"names": (e.variant, e.reference), "metric": e.metric, "values": (a, b),
                      "seeds": (metric_seeds(summary, e.variant, e.metric), metric_seeds(summary, e.reference, e.metric)),
                      "ill_posed": sorted({methods.get(e.variant), methods.get(e.reference)} & set(ILL_POSED_METHODS)),
                      "declared": {"why": e.why}})
    return hyps, comps


def _paired(values, seeds, names, metrics: tuple[str, str], level: float):
    """Paired t over the seeds both arms have; None with fewer than 2 pairs or, for a ratio metric, a value
    that is not positive (it cannot be read on the registered log scale)."""
    a, b, common = aligned(values, seeds)
    log = on_log_scale(*metrics)
    if len(common) < 2 or (log and min(a + b) <= 0):
        return None
    return paired_t(a, b, log=log, level=level, names=names, metric=metrics[0])


def paired_outcome(t, expect: str, alpha: float, equivalence: dict | None, p: float | None = None) -> str:
    """The reading of a paired test at level alpha (p: an adjusted p-value read instead of t.p): 'supported',
    'contradicted', 'not supported', or for 'equal' 'supported: equivalent within the margin' only from TOST."""
    if t is None or t.p is None:
        return "untested (fewer than 2 paired seeds, or a non-positive value of a ratio metric)"
    called = (t.p if p is None else p) < alpha
    if expect == "equal":
        if equivalence and equivalence.get("equivalent"):
            return (f"supported: equivalent within a ratio of {equivalence['margin_ratio']:g} (TOST)"
                    + ("; the paired t also finds a difference smaller than the margin" if called else ""))
        if called:
            return "contradicted: clearly different"
        return ("not shown: neither clearly different nor shown equivalent"
                + ("" if equivalence else " (no equivalence margin on this metric's scale)"))
    if not called:
        return "not supported: not clearly different"
    return "supported" if (t.mean_diff < 0) == (expect == "lower") else "contradicted: clearly in the other direction"


def _verdict_word(outcome: str) -> str:
    return outcome.split(":")[0].split(" (")[0]


def _base(h: dict) -> dict:
    return {k: h[k] for k in ("id", "statement", "metric", "reference_metric", "variant", "reference", "expect")}


def _not_measured(h: dict) -> str:
    return f"not measured: no {h['metric']!r} of {h['variant']} or {h['reference_metric']!r} of {h['reference']}"


def _duplicate(h: dict, done: dict) -> dict:
    first = done[h["duplicate_of"]]
    return {**_base(h), **{k: first.get(k) for k in ("comparison", "equivalence", "test", "sensitivity")},
            "outcome": f"the same comparison as {h['duplicate_of']} (counted once): {first['outcome']}"}


def analyse(summary: dict, ablation: AblationConfig) -> tuple[list[dict], list[dict], dict]:
    """(comparisons, hypotheses, analysis description) as the ablation registered them."""
    hyps, comps = family(summary, ablation)
    alpha = ablation.alpha
    unique = [h for h in hyps if h["duplicate_of"] is None]
    if ablation.analysis == "paired":
        m = max(1, len(unique))
        level = 1 - alpha / m
        out_h, done = [], {}
        for h in hyps:
            if h["duplicate_of"] is not None:
                out_h.append(_duplicate(h, done))
                continue
            a, b = h["values"]
            if a is None or b is None:
                done[h["id"]] = {**_base(h), "comparison": None, "outcome": _not_measured(h)}
                out_h.append(done[h["id"]])
                continue
            metrics = (h["metric"], h["reference_metric"])
            t = _paired((a, b), h["seeds"], h["names"], metrics, level)
            eq = None
            if h["expect"] == "equal" and t is not None and t.log:
                pa, pb, _ = aligned((a, b), h["seeds"])
                eq = tost(pa, pb, margin_ratio=ablation.equivalence_margin, alpha=alpha / m)
            out = NOT_INTERPRETABLE if h["ill_posed"] else paired_outcome(t, h["expect"], alpha / m, eq)
            extra = {}
            if t is None:  # the measured means, and why no test: too few pairs, or a value the log scale cannot take
                pa, pb, common = aligned((a, b), h["seeds"])
                extra = {"means": [float(sum(a) / len(a)), float(sum(b) / len(b))], "n": [len(a), len(b)]}
                if not h["ill_posed"]:
                    out = (f"untested: {len(common)} paired seed{'s' if len(common) != 1 else ''} (a paired test "
                           "needs 2 or more)" if len(common) < 2 else
                           "untested: a non-positive value of a ratio metric (it cannot be read on the log scale)")
            done[h["id"]] = {**_base(h), "comparison": t.to_dict() if t else None, "equivalence": eq,
                             "outcome": out, "test": "paired t" + (" on log values" if t is not None and t.log else ""),
                             **extra}
            out_h.append(done[h["id"]])
        out_c = []
        for c in comps:
            t = _paired(c["values"], c["seeds"], c["names"], (c["metric"], c["metric"]), level)
            declared = {"declared": c["declared"]} if c.get("declared") else {}
            if t is not None:
                out_c.append({**t.to_dict(), "role": "estimate", **declared,
                              **({"reading": NOT_INTERPRETABLE} if c["ill_posed"] else {})})
            elif all(c["values"]):  # too few pairs for an interval: the measured means, worded as single values
                a, b = c["values"]
                out_c.append({"a": c["names"][0], "b": c["names"][1], "metric": c["metric"], "role": "estimate",
                              "no_interval": True, "n_a": len(a), "n_b": len(b),
                              "mean_a": float(sum(a) / len(a)), "mean_b": float(sum(b) / len(b)), **declared,
                              **({"reading": NOT_INTERPRETABLE} if c["ill_posed"] else {})})
        # the equivalence margin is part of the analysis only where a hypothesis expects equality
        margin = ablation.equivalence_margin if any(h["expect"] == "equal" for h in unique) else None
        desc = {"analysis": "paired", "alpha": alpha, "m": m, "level": level,
                "equivalence_margin": margin,
                "text": (f"Registered analysis: paired t-test over seeds (pairs matched by seed; log values for "
                         f"ratio metrics) for each of the m = {m} distinct declared hypotheses at the Bonferroni "
                         f"level alpha/m = {alpha / m:.3g}, with {level:.1%} intervals; "
                         + (f"'equal' only from TOST within a ratio of {margin:g} (its interval at "
                            f"{1 - 2 * alpha / m:.1%} inside the margin); " if margin is not None else
                            "no hypothesis expects equality, so none is read as 'equal'; ")
                         + f"the exact sign-flip p beside each p is a sensitivity check. "
                         f"Other rows are estimates with {level:.1%} intervals, not tests.")}
        return out_c, out_h, desc

    # welch_holm: the registered unpaired analysis, with the paired one as a labelled sensitivity analysis,
    # Holm-corrected over the same family so that only the pairing differs between the two
    for h in unique:
        a, b = h["values"]
        h["welch"] = None if a is None or b is None else welch(a, b, names=h["names"], metric=h["metric"])
    members = [(h["welch"], h) for h in unique if h["welch"] is not None]
    members += [(welch(c["values"][0], c["values"][1], names=c["names"], metric=c["metric"]), c) for c in comps]
    for (w, _), p_adj in zip(members, holm([w.p for w, _ in members])):
        w.p_holm = p_adj
    m = sum(w.p is not None for w, _ in members)
    sens = [_paired(x["values"], x["seeds"], x["names"],
                    (x.get("metric"), x.get("reference_metric", x.get("metric"))), 1 - alpha / max(m, 1))
            for _, x in members]
    tested = [i for i, t in enumerate(sens) if t is not None and t.p is not None]
    sens_holm = dict(zip(tested, holm([sens[i].p for i in tested])))
    by_id = {id(x): i for i, (_, x) in enumerate(members)}
    out_h, done = [], {}
    for h in hyps:
        if h["duplicate_of"] is not None:
            out_h.append(_duplicate(h, done))
            continue
        if h["welch"] is None:
            done[h["id"]] = {**_base(h), "comparison": None, "outcome": _not_measured(h)}
            out_h.append(done[h["id"]])
            continue
        i = by_id[id(h)]
        out = hypothesis_outcome(h["welch"], h["expect"], alpha)
        s_t = sens[i]
        s_out = paired_outcome(s_t, h["expect"], alpha, None, p=sens_holm.get(i)) if s_t is not None else None
        if h["ill_posed"]:
            out = s_out = NOT_INTERPRETABLE
        elif s_out is not None and not s_out.startswith("untested") and _verdict_word(s_out) != _verdict_word(out):
            out = f"{out}; does not hold up across analyses (paired: {_verdict_word(s_out)})"
        done[h["id"]] = {**_base(h), "comparison": h["welch"].to_dict(), "outcome": out, "test": "Welch, Holm",
                         "sensitivity": {"test": "paired t (deviation from the registration), Holm over the family",
                                         "comparison": s_t.to_dict() if s_t else None, "p_holm": sens_holm.get(i),
                                         "outcome": s_out}}
        out_h.append(done[h["id"]])
    out_c, comp_ids = [], {id(c) for c in comps}
    for w, c in members:
        if id(c) in comp_ids:
            out_c.append({**w.to_dict(), **({"reading": NOT_INTERPRETABLE} if c["ill_posed"] else {})})
    desc = {"analysis": "welch_holm", "alpha": alpha, "m": m,
            "text": (f"Registered analysis: Welch's t-test over training seeds on the raw metric, Holm's correction "
                     + (f"over the m = {m} distinct comparisons of this table that could be tested (each once; "
                        f"{len(members)} listed). " if m < len(members) else
                        f"over the m = {m} distinct comparisons of this table (each once). ")
                     + f"Sensitivity, a deviation "
                     f"from the registration: paired t over seeds (pairs matched by seed; log values for ratio "
                     f"metrics), Holm over the same family; a hypothesis whose reading differs between the two does "
                     f"not hold up across analyses. Comparisons with an ill-posed arm keep their place in the family "
                     f"and are not interpreted.")}
    return out_c, out_h, desc


def registered_comparison(c: dict) -> Comparison | None:
    """A Welch comparison dict back as a Comparison (for its sentence), None for paired ones."""
    return Comparison(**c) if c is not None and "diff" in c else None
