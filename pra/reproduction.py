"""Does a rerun reproduce committed metrics? Within the seed-to-seed spread, not byte for byte.

Bit-identical results need the same code, data, library versions and CPU type (floating-point kernels
differ between CPU models: rerunning the default on another CPU type moved single-seed FIDs by about
half a point). What a rerun elsewhere can promise is agreement within the spread that training seeds
produce. `check` compares every run's metric in two metrics.json files against `k` times the pooled
seed standard deviation measured by an ablation with several seeds (its `<metric>_sd` entries).
"""
from __future__ import annotations

import math
import sys


def pooled_sd(spread_metrics: dict, metric: str = "fid") -> tuple[float, int]:
    """Root mean square of the per-variant seed sds of `metric` in a metrics.json, and how many variants."""
    sds = [v[f"{metric}_sd"] for key, ab in spread_metrics.items() if key.startswith("ablation/")
           for v in ab.values() if f"{metric}_sd" in v]
    if not sds:
        raise ValueError(f"no '{metric}_sd' in the spread file: it needs an ablation with 2 or more seeds")
    return math.sqrt(sum(s * s for s in sds) / len(sds)), len(sds)


def check(committed: dict, rerun: dict, sd: float, *, metric: str = "fid", k: float = 3.0) -> list[dict]:
    """One row per run present in both files: the difference and whether it is within k * sd."""
    rows = []
    for key in sorted(set(committed) & set(rerun)):
        a, b = committed[key], rerun[key]
        if key.startswith("ablation/") or not isinstance(a, dict) or metric not in a or metric not in b:
            continue
        diff = b[metric] - a[metric]
        rows.append({"run": key, "metric": metric, "committed": a[metric], "rerun": b[metric], "difference": diff,
                     "tolerance": k * sd, "within": abs(diff) <= k * sd})
    return rows


# ---- the command-line job ----------------------------------------------------------------------
def check_rerun_job(args):
    from pra.io import read_json

    sd, n = pooled_sd(read_json(args.spread), args.metric)
    rows = check(read_json(args.committed), read_json(args.rerun), sd, metric=args.metric, k=args.k)
    if not rows:
        sys.exit(f"no run with '{args.metric}' in both {args.committed} and {args.rerun}")
    print(f"{args.metric}: tolerance {args.k:g} x pooled seed sd {sd:.3f} (from {n} variants of {args.spread})")
    for r in rows:
        print(f"  {r['run']}: committed {r['committed']:.3f}, rerun {r['rerun']:.3f}, difference "
              f"{r['difference']:+.3f} -> {'within' if r['within'] else 'OUTSIDE'} the spread")
    sys.exit(0 if all(r["within"] for r in rows) else 1)
