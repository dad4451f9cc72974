"""The share of latent_tf's log-FID gap to pra_t1 carried by the trunk's inputs (settle3's registered estimate):

    share = mean_s[log FID(latent_tf) - log FID(pra_t1_tfctx)] / mean_s[log FID(latent_tf) - log FID(pra_t1)]

over the registered seeds s, with a 95% percentile bootstrap interval over seeds (10,000 resamples of the seeds
with replacement, numpy default_rng(0)). Registered rule: reported only if the denominator's family-level
interval (the analysis's latent_tf vs pra_t1 estimate) lies above 1 as a FID ratio and the point estimate lies in
[0, 1]; otherwise the reason is written instead. A point estimate, then, of how much of one gap one step of the
ladder carries; its interval is the bootstrap's.

    python reports/settle3/share.py reports/settle3/analysis.json reports/settle3/share
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

TOP, MIDDLE, BOTTOM = "latent_tf", "pra_t1_tfctx", "pra_t1"


def share(top, middle, bottom, *, resamples: int = 10_000, seed: int = 0) -> dict:
    """Per-seed FIDs (aligned lists) -> point estimate and bootstrap interval of the share."""
    lt, lm, lb = (np.log(np.asarray(v, dtype=float)) for v in (top, middle, bottom))
    d1, dg = lt - lm, lt - lb
    point = float(d1.mean() / dg.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d1), size=(resamples, len(d1)))
    den = dg[idx].mean(1)
    boot = d1[idx].mean(1)[den > 0] / den[den > 0]
    lo, hi = np.percentile(boot, [2.5, 97.5]) if len(boot) else (math.nan, math.nan)
    return {"share": point, "ci95": [float(lo), float(hi)], "resamples": resamples,
            "resamples_with_positive_gap": int(len(boot)), "gap_log_mean": float(dg.mean()),
            "step1_log_mean": float(d1.mean())}


def _known_answers():
    # the middle arm halfway on the log scale on every seed: share 0.5 in every resample
    top, bottom = [30.0, 20.0, 40.0, 25.0], [6.0, 5.0, 8.0, 5.5]
    middle = [math.sqrt(a * b) for a, b in zip(top, bottom)]
    r = share(top, middle, bottom, resamples=200)
    assert abs(r["share"] - 0.5) < 1e-12 and abs(r["ci95"][0] - 0.5) < 1e-12 and abs(r["ci95"][1] - 0.5) < 1e-12
    # the middle arm equal to the top one: share 0; equal to the bottom one: share 1
    assert abs(share(top, top, bottom, resamples=50)["share"]) < 1e-12
    assert abs(share(top, bottom, bottom, resamples=50)["share"] - 1) < 1e-12


def main(analysis_path: str, out: str) -> None:
    _known_answers()
    a = json.loads(Path(analysis_path).read_text())
    group = next(g for g in a["groups"] if g["ablation"] == "context")
    arms = {v["name"]: v["metrics"]["fid"] for v in group["summary"]["variants"]}
    seeds = group["seeds"]
    vals = {n: [dict(zip(arms[n]["seeds"], arms[n]["values"]))[s] for s in seeds] for n in (TOP, MIDDLE, BOTTOM)}
    gap = next(e for e in group["all_pairs"] if e["metric"] == "fid" and {e["a"], e["b"]} == {TOP, BOTTOM})
    lo, hi = gap["ratio_ci"] if gap["a"] == TOP else [1 / gap["ratio_ci"][1], 1 / gap["ratio_ci"][0]]
    r = {"source": analysis_path, "seeds": seeds, "gap_ratio_ci_family_level": [lo, hi],
         "family_level": gap["level"], **share(vals[TOP], vals[MIDDLE], vals[BOTTOM])}
    if not lo > 1:
        r["reported"], r["reason"] = False, f"latent_tf / pra_t1's interval [{lo:.3g}, {hi:.3g}] does not lie above 1"
    elif not 0 <= r["share"] <= 1:
        r["reported"], r["reason"] = False, f"the point estimate {r['share']:.3g} lies outside [0, 1]"
    else:
        r["reported"], r["reason"] = True, ""
    Path(out + ".json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    text = (f"Share of latent_tf's log-FID gap to pra_t1 carried by the trunk's inputs (latent_tf -> pra_t1_tfctx), "
            f"{len(seeds)} seeds, from `{analysis_path}`: "
            + (f"{r['share']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] (95% bootstrap over seeds; the gap "
               f"latent_tf / pra_t1 {math.exp(r['gap_log_mean']):.2f}x [{lo:.2f}, {hi:.2f}] at the family level)."
               if r["reported"] else f"not reported: {r['reason']}.") + "\n")
    Path(out + ".md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main(*sys.argv[1:3])
