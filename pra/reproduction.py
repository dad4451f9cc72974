"""Does a rerun reproduce committed metrics? Within the seed-to-seed spread, not byte for byte.

Bit-identical results need the same code, data, library versions and CPU type (floating-point kernels differ
between CPU types: a rerun of the default on another machine moved every FID by 5-9%, the classifier it trained
having other weights: docs/pipeline.md). What a rerun elsewhere can promise is agreement within the spread that
training seeds produce, measured in one feature space. `check` compares the runs two metrics.json files share,
on the log scale for ratio metrics (FID, KID, IS), else on the raw one, with two tests at alpha/2 each:

* each run: |difference| within t(df, 1 - alpha/(4R)) * sqrt(2) * sd, R the runs compared (Bonferroni): what
  the difference of two independent seed draws stays within with probability 1 - alpha/2 for all R together, so
  a rerun that is no further from the committed run than another seed would be fails no more often than that;
* all runs together: the mean difference against its standard error under the same model (sqrt(2 * sum sd_i^2)
  / R), which catches a shift shared by every run (a 1.2x FID shift over six runs at a 10% seed sd) that each run's
  own bound lets through.

sd: the seed sd of the run's own arm (scale/method/variant) in the spread file where that arm has 10 or more seeds,
else the pooled sd of the spread's well-posed arms (ill-posed ones, pra.config.ILL_POSED_METHODS, spread
differently); an arm's non-positive values of a ratio metric are left out of it (they have no log) and said so.
The real-data floor has no training seed: it is shown, never judged. Each file's `scoring` record (the data, the
feature network and its weights digest, written by the report) is compared between every two files that have
one: a rerun or spread of other data, or a rerun scored by another feature network, is refused (exit 2) before
any run is compared; a spread scored by another feature network is used with a note; a file without the record
(an older report) is named and compared as given.
"""
from __future__ import annotations

import math
import sys

from pra.analysis import RATIO_METRICS
from pra.config import ILL_POSED_METHODS
from pra.paired import arm_of, arm_spreads, pooled_sd

FLOOR = "real_val_floor"


class NotComparable(ValueError):
    """The files cannot be compared: other data or another feature space."""


OWN_ARM_SEEDS = 10  # an arm with this many seeds is held to its own sd; with fewer its sd is too uncertain (the
# t quantile of 4 df at a Bonferroni level is 1.4x that of 12) and the pooled one is used


def spreads(spread_metrics: dict, metric: str = "fid") -> tuple[dict[str, dict], dict, list[str]]:
    """(per arm {seeds, sd, df}, the pooled {sd, df, arms} of the well-posed arms, notes) of a metrics.json with
    several seeds per arm; sds of log values for ratio metrics, whose non-positive values are left out."""
    arms, notes = arm_spreads(spread_metrics, metric, log=metric in RATIO_METRICS)
    pool = [(s["df"], s["sd"]) for a, s in arms.items() if a.split("/")[1] not in ILL_POSED_METHODS]
    if not pool:
        raise ValueError(f"no well-posed arm with 2 or more seeds of '{metric}' in the spread file: it needs an "
                         "experiment with several seeds per arm (its per-run entries '<scale>/<method>/<variant>/s<seed>')")
    return arms, {"sd": pooled_sd(pool), "df": sum(df for df, _ in pool), "arms": len(pool)}, notes


def check_scoring(committed: tuple[str, dict], rerun: tuple[str, dict], spread: tuple[str, dict]) -> list[str]:
    """(name, metrics.json) of each file. Refuses (NotComparable) a spread or rerun of other data than the
    committed file, and a rerun scored by another feature network; returns notes: a file without the record,
    a spread measured by another feature network (its sd of log values is taken for this one's)."""
    files = dict([committed, rerun, spread])
    recs = {name: m.get("scoring") for name, m in files.items()}
    notes = [f"{name} has no scoring record (an older report): its data and feature space are taken as given"
             for name, r in recs.items() if not r]

    def differ(a: str, b: str, fields) -> list[str]:
        ra, rb = recs[a] or {}, recs[b] or {}
        return [f for f in fields if ra.get(f) is not None and rb.get(f) is not None and ra[f] != rb[f]]

    c, r, s = committed[0], rerun[0], spread[0]
    for a, b, kind in ((c, r, "the rerun"), (c, s, "the spread"), (r, s, "the spread")):
        bad = differ(a, b, ("data", "data_sha256"))
        if bad:
            raise NotComparable(f"{kind} ({b}) was measured on other data than {a} ({bad[0]}: "
                                f"{recs[b][bad[0]]} vs {recs[a][bad[0]]}): its values say nothing about this data")
    bad = differ(c, r, ("feature_network", "feature_sha256"))
    if bad:
        raise NotComparable(f"the rerun ({r}) was scored by another feature network than {c} ({bad[0]}: "
                            f"{str(recs[r][bad[0]])[:16]} vs {str(recs[c][bad[0]])[:16]}): their FIDs lie in different "
                            "feature spaces (a classifier trained on another CPU type has other weights); score the "
                            "rerun with the committed run's classifier (evaluate.classifier_dir)")
    if differ(c, s, ("feature_network", "feature_sha256")) or differ(r, s, ("feature_network", "feature_sha256")):
        notes.append(f"the spread ({s}) was measured by another feature network: its seed sd is taken for this one's")
    return notes


def check(committed: dict, rerun: dict, arms: dict[str, dict], pooled: dict, *, metric: str = "fid",
          alpha: float = 0.05) -> dict:
    """{"rows": one per entry both files have with the metric (difference, tolerance, within: True/False, or None
    for the floor and other entries that are not judged), "shift": the test of the mean difference}."""
    from scipy import stats

    log = metric in RATIO_METRICS
    rows = []
    for key in sorted(set(committed) & set(rerun)):
        a, b = committed[key], rerun[key]
        if key.startswith("ablation/") or not isinstance(a, dict) or not isinstance(b, dict) \
                or metric not in a or metric not in b:
            continue
        row = {"run": key, "metric": metric, "committed": a[metric], "rerun": b[metric], "log": log, "within": None}
        arm = arm_of(key)
        if log and min(a[metric], b[metric]) <= 0:
            rows.append({**row, "why": "a non-positive value: no log-scale comparison"})
        elif arm is None:
            rows.append({**row, "difference": b[metric] - a[metric],
                         "why": "no training seed, so no seed spread: shown, not judged" if key == FLOOR
                         else "not a trained run: shown, not judged"})
        else:
            own = arms.get(arm)
            use_own = own is not None and own["seeds"] >= OWN_ARM_SEEDS
            sd, df = (own["sd"], own["df"]) if use_own else (pooled["sd"], pooled["df"])
            source = (f"its arm's sd over {own['seeds']} seeds" if use_own else
                      f"the pooled sd of {pooled['arms']} arms" + (f" (its arm has {own['seeds']} seeds)" if own else
                                                                   " (the spread lacks its arm)"))
            rows.append({**row, "difference": math.log(b[metric] / a[metric]) if log else b[metric] - a[metric],
                         "sd": sd, "df": df, "sd_source": source})
    judged = [r for r in rows if "sd" in r]
    shift = None
    if judged:
        for r in judged:
            r["tolerance"] = float(stats.t.ppf(1 - alpha / (4 * len(judged)), r["df"]) * math.sqrt(2) * r["sd"])
            r["within"] = bool(abs(r["difference"]) <= r["tolerance"])
        mean = sum(r["difference"] for r in judged) / len(judged)
        se = math.sqrt(2 * sum(r["sd"] ** 2 for r in judged)) / len(judged)
        df = min(r["df"] for r in judged)
        p = float(2 * stats.t.sf(abs(mean / se), df)) if se > 0 else (0.0 if mean else 1.0)
        shift = {"mean_difference": mean, "se": se, "df": df, "p": p, "alpha": alpha / 2, "runs": len(judged),
                 "shifted": p < alpha / 2}
    return {"rows": rows, "shift": shift, "alpha": alpha}


# ---- the command-line job ----------------------------------------------------------------------
def check_rerun_job(args):
    from pra.io import read_json

    committed, rerun, spread = read_json(args.committed), read_json(args.rerun), read_json(args.spread)
    try:
        notes = check_scoring((args.committed, committed), (args.rerun, rerun), (args.spread, spread))
        arms, pooled, spread_notes = spreads(spread, args.metric)
    except NotComparable as e:
        print(f"check-rerun: not comparable: {e}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:
        print(f"check-rerun: {e}", file=sys.stderr)
        sys.exit(2)
    res = check(committed, rerun, arms, pooled, metric=args.metric, alpha=args.alpha)
    rows, shift = res["rows"], res["shift"]
    if shift is None:
        print(f"check-rerun: no trained run with '{args.metric}' in both {args.committed} and {args.rerun}",
              file=sys.stderr)
        sys.exit(2)
    log = args.metric in RATIO_METRICS
    for note in notes + spread_notes:
        print(f"note: {note}")
    print(f"{args.metric}: differences of {'log ' if log else ''}values, {shift['runs']} runs, seed sds from "
          f"{args.spread} (pooled over {pooled['arms']} well-posed arms: {pooled['sd']:.3g}); each run within the "
          f"bound that two seed draws keep for all {shift['runs']} together at {args.alpha / 2:g}, and the mean "
          f"difference tested at {args.alpha / 2:g}")
    for r in rows:
        head = f"  {r['run']}: committed {r['committed']:.4g}, rerun {r['rerun']:.4g}"
        if r["within"] is None:
            print(f"{head} -> {r['why']}")
            continue
        ratio = (f" (ratio {math.exp(r['difference']):.3f}, bound {math.exp(-r['tolerance']):.3f}-"
                 f"{math.exp(r['tolerance']):.3f})" if log else "")
        print(f"{head}, difference {r['difference']:+.3g}{ratio}, tolerance {r['tolerance']:.3g} "
              f"({r['sd_source']}) -> {'within' if r['within'] else 'OUTSIDE'} the spread")
    m = shift["mean_difference"]
    print(f"  all runs: mean difference {m:+.3g}" + (f" (ratio {math.exp(m):.3f})" if log else "")
          + f", standard error {shift['se']:.3g}, p {shift['p']:.3g} -> "
          + ("SHIFTED: every run moved together" if shift["shifted"] else "no shared shift"))
    sys.exit(0 if all(r["within"] for r in rows if r["within"] is not None) and not shift["shifted"] else 1)
