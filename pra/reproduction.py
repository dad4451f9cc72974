"""Does a rerun reproduce committed metrics? Within the seed-to-seed spread, not byte for byte.

Bit-identical results need the same code, data, library versions and CPU type (floating-point kernels differ
between CPU types: a rerun of the default on another machine moved every FID by 5-9%, the classifier it trained
having other weights: docs/pipeline.md). What a rerun elsewhere can promise is agreement within the spread that
training seeds produce, measured in one feature space. `check` compares each run of two metrics.json files:

* on the log scale for ratio metrics (FID, KID, IS), else on the raw one, against k times the seed sd of that
  run's own arm (scale/method/variant) in a spread file, an experiment with several seeds per arm on the same
  data and feature space; an arm the spread lacks is held to the pooled sd of the spread's well-posed arms
  (the ill-posed ones, pra.config.ILL_POSED_METHODS, spread differently and are left out of the pool), and
  the row says so;
* the real-data floor has no training seed and no seed spread: it is shown, never judged (it moves only with
  the data or the feature network);
* each file's `scoring` record (the data, the feature network and its weights digest, written by the report):
  a spread or rerun of other data, or a rerun scored by another feature network, is refused before any run is
  compared; a spread scored by another feature network is used with a note (a file without the record, from an
  older report, is named and compared as given).
"""
from __future__ import annotations

import math
import sys

from pra.analysis import RATIO_METRICS
from pra.config import ILL_POSED_METHODS
from pra.paired import arm_sds

FLOOR = "real_val_floor"


class NotComparable(ValueError):
    """The files cannot be compared: other data or another feature space."""


def arm_of(key: str) -> str | None:
    """'tiny-S/pra/base/s0' -> 'tiny-S/pra/base'; None for an entry that is not a trained run."""
    parts = key.split("/")
    return "/".join(parts[:3]) if len(parts) == 4 and parts[3][1:].isdigit() and parts[3][0] == "s" else None


def spreads(spread_metrics: dict, metric: str = "fid") -> tuple[dict[str, dict], float, int]:
    """(per arm {seeds, sd}, the pooled sd of the well-posed arms, how many arms pooled) of a metrics.json with
    several seeds per arm; sds of log values for ratio metrics."""
    arms = arm_sds(spread_metrics, metric, log=metric in RATIO_METRICS)
    pool = {a: s for a, s in arms.items() if a.split("/")[1] not in ILL_POSED_METHODS}
    if not pool:
        raise ValueError(f"no well-posed arm with 2 or more seeds of '{metric}' in the spread file: it needs an "
                         "experiment with several seeds per arm (its per-run entries '<scale>/<method>/<variant>/s<seed>')")
    pooled = math.sqrt(sum((s["seeds"] - 1) * s["sd"] ** 2 for s in pool.values())
                       / sum(s["seeds"] - 1 for s in pool.values()))
    return arms, pooled, len(pool)


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
    for other, kind in ((r, "the rerun"), (s, "the spread")):
        bad = differ(c, other, ("data", "data_sha256"))
        if bad:
            raise NotComparable(f"{kind} ({other}) was measured on other data than {c} ({bad[0]}: "
                                f"{recs[other][bad[0]]} vs {recs[c][bad[0]]}): its values say nothing about this data")
    bad = differ(c, r, ("feature_network", "feature_sha256"))
    if bad:
        raise NotComparable(f"the rerun ({r}) was scored by another feature network than {c} ({bad[0]}: "
                            f"{str(recs[r][bad[0]])[:16]} vs {str(recs[c][bad[0]])[:16]}): their FIDs lie in different "
                            "feature spaces (a classifier trained on another CPU type has other weights); score the "
                            "rerun with the committed run's classifier (evaluate.classifier_dir)")
    if differ(c, s, ("feature_network", "feature_sha256")):
        notes.append(f"the spread ({s}) was measured by another feature network: its seed sd is taken for this one's")
    return notes


def check(committed: dict, rerun: dict, arms: dict[str, dict], pooled: float, *, metric: str = "fid",
          k: float = 3.0) -> list[dict]:
    """One row per entry present in both files with the metric: the difference (of logs for a ratio metric),
    the tolerance k * sd of the run's arm (or the pooled sd) and whether it is within; the floor is not judged."""
    log = metric in RATIO_METRICS
    rows = []
    for key in sorted(set(committed) & set(rerun)):
        a, b = committed[key], rerun[key]
        if key.startswith("ablation/") or not isinstance(a, dict) or not isinstance(b, dict) \
                or metric not in a or metric not in b:
            continue
        row = {"run": key, "metric": metric, "committed": a[metric], "rerun": b[metric], "log": log}
        if log and min(a[metric], b[metric]) <= 0:
            rows.append({**row, "within": None, "why": "a non-positive value: no log-scale comparison"})
            continue
        row["difference"] = math.log(b[metric] / a[metric]) if log else b[metric] - a[metric]
        arm = arm_of(key)
        if arm is None:
            rows.append({**row, "within": None, "why": "no training seed, so no seed spread: shown, not judged"
                         if key == FLOOR else "not a trained run: shown, not judged"})
            continue
        own = arms.get(arm)
        sd, source = (own["sd"], f"its arm's sd over {own['seeds']} seeds") if own else (pooled, "the pooled sd "
                                                                                          "(the spread lacks this arm)")
        rows.append({**row, "sd": sd, "sd_source": source, "tolerance": k * sd,
                     "within": abs(row["difference"]) <= k * sd})
    return rows


# ---- the command-line job ----------------------------------------------------------------------
def check_rerun_job(args):
    from pra.io import read_json

    committed, rerun, spread = read_json(args.committed), read_json(args.rerun), read_json(args.spread)
    try:
        notes = check_scoring((args.committed, committed), (args.rerun, rerun), (args.spread, spread))
        arms, pooled, n = spreads(spread, args.metric)
    except (NotComparable, ValueError) as e:
        sys.exit(f"check-rerun: {e}")
    rows = check(committed, rerun, arms, pooled, metric=args.metric, k=args.k)
    judged = [r for r in rows if r["within"] is not None]
    if not judged:
        sys.exit(f"no trained run with '{args.metric}' in both {args.committed} and {args.rerun}")
    scale = "log " if args.metric in RATIO_METRICS else ""
    for note in notes:
        print(f"note: {note}")
    print(f"{args.metric}: difference of {scale}values against {args.k:g} seed sds of each run's arm in "
          f"{args.spread} (pooled over {n} well-posed arms: {pooled:.3g}, for an arm it lacks)")
    for r in rows:
        head = f"  {r['run']}: committed {r['committed']:.4g}, rerun {r['rerun']:.4g}"
        if r["within"] is None:
            print(f"{head} -> {r['why']}")
            continue
        ratio = f" (ratio {math.exp(r['difference']):.3f})" if r["log"] else ""
        print(f"{head}, difference {r['difference']:+.3g}{ratio}, tolerance {r['tolerance']:.3g} "
              f"({args.k:g} x {r['sd_source']}) -> {'within' if r['within'] else 'OUTSIDE'} the spread")
    sys.exit(0 if all(r["within"] for r in judged) else 1)
