"""What a pilot block of a study says, as estimates: per arm its spread over seeds, per pair of arms the paired
geometric-mean ratio with its interval and the correlation across seeds, and what the spread implies for the
seeds of the registered study. Nothing here is a test: a pilot (phase 0) informs the registration.

Input: the committed records of one block (pra.study: block.json and one JSON per run). Output: <out>.json and
<out>.md.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from pra.paired import paired_t, sd_of_differences, seeds_for, seeds_for_tost

RATIO_METRICS = ("fid", "kid")  # analysed as logs: ratios between arms
DIFFERENCE_METRICS = ("class_accuracy", "acc_region_excess")  # analysed as differences
DESCRIBED = ("fid", "kid", "class_accuracy", "precision", "recall", "acc_region_excess", "acc_growth_beta",
             "approx_pra_content_ratio")
SLOW_GFLOPS = 65.0  # the slowest machine studies are sized for (1-thread fp32 matmul)


def _by_arm(runs: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for r in runs:
        out.setdefault(r["variant"], {})[r["seed"]] = r
    return out


def _values(arm: dict[int, dict], key: str, seeds: list[int]) -> list[float] | None:
    vals = []
    for s in seeds:
        r = arm[s]
        v = r["metrics"].get(key) if key in r["metrics"] else r.get(key)
        if v is None:
            return None
        vals.append(float(v))
    return vals


def summarise(block: dict, *, alpha: float = 0.05, m: int = 3, power_target: float = 0.8,
              ratios=(1.1, 1.2, 1.3), margin: float = 1.2) -> dict:
    """The pilot's estimates (see the module docstring) from one block record with its runs."""
    arms = _by_arm(block["run_records"])
    names = list(block["variants"])
    seeds = sorted(block["block"].get("seeds") or set.union(*(set(a) for a in arms.values())))
    missing = [f"{n} s{x}" for n in names for x in seeds if x not in arms.get(n, {})]
    if missing:
        raise ValueError(f"block {block['block']['id']!r}: no record of the registered runs {missing}")
    per_arm = {}
    for n in names:
        row = {"seeds": len(seeds)}
        for key in (*DESCRIBED, "seconds_per_step", "input_mse_last_fifth", "train_seconds", "sample_seconds"):
            v = _values(arms[n], key, seeds)
            if v is not None:
                row[key] = {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                            "min": float(min(v)), "max": float(max(v))}
        for key in RATIO_METRICS:
            v = _values(arms[n], key, seeds)
            if v is not None and min(v) > 0:
                row[f"{key}_geomean"] = float(math.exp(np.mean(np.log(v))))
                row[f"{key}_sd_log"] = float(np.std(np.log(v), ddof=1))
        per_arm[n] = row
    pairs = []
    for a, b in itertools.combinations(names, 2):
        for key in (*RATIO_METRICS, *DIFFERENCE_METRICS):
            va, vb = _values(arms[a], key, seeds), _values(arms[b], key, seeds)
            if va is None or vb is None:
                continue
            log = key in RATIO_METRICS
            t = paired_t(va, vb, log=log, level=0.95, names=(a, b), metric=key)
            xa, xb = (np.log(va), np.log(vb)) if log else (np.asarray(va), np.asarray(vb))
            corr = float(np.corrcoef(xa, xb)[0, 1]) if len(seeds) > 2 and xa.std() > 0 and xb.std() > 0 else None
            pairs.append({"a": a, "b": b, "metric": key, "log": log, "n": t.n,
                          "estimate": t.ratio if log else t.mean_diff,
                          "ci95": list(t.ratio_ci) if log and t.ratio_ci else (list(t.ci) if t.ci else None),
                          "sd_diff": t.sd_diff, "correlation": corr,
                          "a_lower_in": int(sum(x < y for x, y in zip(va, vb)))})
    # the seeds a registered study needs (log FID, Bonferroni over m, 80% power), from the larger per-arm sd
    # and correlation 0 (a pilot of under 10 seeds does not estimate it well enough to lean on)
    sds = [per_arm[n]["fid_sd_log"] for n in names if "fid_sd_log" in per_arm[n]]
    sd = sd_of_differences(max(sds), max(sds), 0.0) if sds else None
    level = alpha / m
    def needs(sd_diff, effect=None):
        return {"sd_of_differences": sd_diff,
                "seeds_to_detect": {str(r): seeds_for(math.log(r), sd_diff, level, power_target) for r in ratios},
                "seeds_for_equivalence": seeds_for_tost(math.log(margin), sd_diff, level, power_target),
                **({"pilot_ratio": math.exp(abs(effect)),
                    "seeds_at_pilot_ratio": seeds_for(abs(effect), sd_diff, level, power_target)}
                   if effect else {})}

    def pair_plan(a, b):
        """From the larger of two sds of the log-FID differences: the arms' own sds with correlation 0, and the
        observed differences' sd at its one-sided 80% upper confidence bound (chi-square, n - 1 df)."""
        from scipy import stats

        va, vb = np.log(_values(arms[a], "fid", seeds)), np.log(_values(arms[b], "fid", seeds))
        d = va - vb
        n = len(d)
        sd_obs = float(np.std(d, ddof=1))
        ucb = sd_obs * math.sqrt((n - 1) / stats.chi2.ppf(0.2, n - 1))
        sd0 = sd_of_differences(per_arm[a]["fid_sd_log"], per_arm[b]["fid_sd_log"])
        return {"a": a, "b": b, "sd_correlation0": sd0, "sd_observed": sd_obs, "sd_observed_ucb80": ucb,
                **needs(max(sd0, ucb), float(d.mean()))}

    plan = {"alpha": alpha, "m": m, "power": power_target, "sd_log_fid_max": max(sds) if sds else None,
            "correlation_assumed": 0.0, "equivalence_margin": margin, **(needs(sd) if sd else {}),
            # per pair, from the two arms' own spreads (correlation 0 as above)
            "pairs": [pair_plan(a, b) for a, b in itertools.combinations(names, 2)
                      if "fid_sd_log" in per_arm[a] and "fid_sd_log" in per_arm[b] and len(seeds) > 2]}
    curves, sampling = _curves(arms, names, seeds), _sampling_noise(arms, names, seeds, per_arm)
    inv = block.get("invocations") or []
    # the invocations that built something (a resumed block's last one may only rewrite its records)
    built = [i for i in inv if (i.get("targets_present_before") or 0) < block.get("targets", 1)] or inv
    wall = block.get("wall_seconds")
    gflops = built[0].get("matmul_gflops_1thread") if built else block.get("matmul_gflops_1thread")
    return {"block": block["block"], "registration": block["registration"],
            "commits": sorted({i.get("head_commit") for i in built if i.get("head_commit")}),
            "corrections": block.get("corrections"),
            "cpu_model": block.get("cpu_model"), "matmul_gflops_1thread": gflops, "wall_seconds": wall,
            # a rough equivalent, not a measurement: wall time scaled by the matmul peaks
            "wall_hours_at_slow_machine": (wall / 3600 * gflops / SLOW_GFLOPS) if wall and gflops else None,
            "seeds": seeds, "arms": per_arm, "pairs": pairs, "plan": plan, "curves": curves,
            "sampling_noise": sampling}


def _curves(arms, names, seeds) -> dict:
    """Per arm and weights (ema, raw): the proxy FID along training (pra.evaluate.along), mean and sd over
    seeds per step; {} when the runs have no evaluation along training."""
    out: dict = {}
    for n in names:
        rows = {s: arms[n][s].get("along_training") for s in seeds}
        if not all(rows.values()):
            continue
        for w in ("ema", "raw"):
            steps = sorted({r["step"] for s in seeds for r in rows[s] if r["weights"] == w})
            pts = []
            for step in steps:
                v = [r["fid"] for s in seeds for r in rows[s] if r["weights"] == w and r["step"] == step]
                if len(v) == len(seeds):
                    pts.append({"step": step, "fid_mean": float(np.mean(v)),
                                "fid_sd": float(np.std(v, ddof=1)) if len(v) > 1 else None})
            out.setdefault(n, {})[w] = pts
    return out


def _sampling_noise(arms, names, seeds, per_arm) -> dict:
    """Two samples of each final model: the final evaluation's (sample.seed) and the last EMA row of the
    evaluation along training (evaluate.snapshot_seed; the same size when snapshot_per_class = per_class).
    Per arm: the log ratios per seed and the sampling sd of log FID they imply (sqrt(mean d^2 / 2)), beside the
    seed-to-seed sd of log FID (training and sampling noise together)."""
    out = {}
    for n in names:
        d, sizes = [], set()
        for s in seeds:
            r = arms[n][s]
            rows = [x for x in (r.get("along_training") or []) if x["weights"] == "ema"]
            if not rows or "fid" not in r["metrics"]:
                break
            last = max(rows, key=lambda x: x["step"])
            if last["step"] != r["steps"]:
                break
            d.append(math.log(r["metrics"]["fid"]) - math.log(last["fid"]))
            sizes.add(last.get("num_samples"))
        else:
            if d:
                out[n] = {"log_ratios": d, "sampling_sd_log": math.sqrt(float(np.mean(np.square(d))) / 2),
                          "seed_sd_log": per_arm[n].get("fid_sd_log"), "proxy_sizes": sorted(map(str, sizes))}
    return out


def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def markdown(s: dict, source: str) -> str:
    b = s["block"]
    lines = [f"# Pilot block {b['id']} (phase 0: estimates, not tests)", "",
             f"{b['purpose']}", "",
             f"Source: `{source}` (the block's committed records); runs at commit(s) "
             f"{', '.join(c[:10] for c in s['commits'])} under the registered result code hash "
             f"`{s['registration']['code_hash']}` (study file at {s['registration']['study_commit'][:10]}). "
             f"Machine: {s['cpu_model']}, 1-thread matmul {_fmt(s['matmul_gflops_1thread'])} GFLOP/s; "
             f"wall time {_fmt((s['wall_seconds'] or 0) / 3600)} h (registered budget {b['budget_hours']} h on a "
             f"{SLOW_GFLOPS:.0f} GFLOP/s machine; scaled by the matmul peaks: ~{_fmt(s['wall_hours_at_slow_machine'])} h).",
             "", f"Seeds: {s['seeds']}.", "", "## Per arm (mean, sd over seeds; FID/KID also as geometric means)", "",
             "| arm | FID geo. mean | FID mean (sd) | sd log FID | KID mean | class agreement | accumulation excess "
             "| s/step | input MSE (last fifth) |", "|---|---|---|---|---|---|---|---|---|"]
    for n, r in s["arms"].items():
        def ms(k):
            return f"{_fmt(r[k]['mean'])} ({_fmt(r[k]['sd'])})" if k in r else "-"

        lines.append(f"| {n} | {_fmt(r.get('fid_geomean'))} | {ms('fid')} | {_fmt(r.get('fid_sd_log'))} | "
                     f"{_fmt(r['kid']['mean']) if 'kid' in r else '-'} | {ms('class_accuracy')} | "
                     f"{ms('acc_region_excess')} | {_fmt(r['seconds_per_step']['mean']) if 'seconds_per_step' in r else '-'} | "
                     f"{_fmt(r['input_mse_last_fifth']['mean']) if 'input_mse_last_fifth' in r else '-'} |")
    lines += ["", "## Pairs (paired over seeds; 95% t-intervals, unadjusted: estimates)", "",
              "| a vs b | metric | estimate | 95% interval | seeds with a < b | correlation across seeds |",
              "|---|---|---|---|---|---|"]
    for p in s["pairs"]:
        kind = "ratio a/b" if p["log"] else "difference a-b"
        ci = f"[{_fmt(p['ci95'][0])}, {_fmt(p['ci95'][1])}]" if p["ci95"] else "-"
        lines.append(f"| {p['a']} vs {p['b']} | {p['metric']} ({kind}) | {_fmt(p['estimate'])} | {ci} | "
                     f"{p['a_lower_in']}/{p['n']} | {_fmt(p['correlation'], 2)} |")
    if s.get("curves"):
        arms = list(s["curves"])
        steps = sorted({p["step"] for a in arms for p in s["curves"][a].get("ema", [])})
        lines += ["", "## Along training (proxy FID of the EMA weights, mean (sd) over seeds; raw weights in the JSON)",
                  "", "| step | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
        for st in steps:
            cells = []
            for a in arms:
                p = next((p for p in s["curves"][a].get("ema", []) if p["step"] == st), None)
                cells.append(f"{_fmt(p['fid_mean'])} ({_fmt(p['fid_sd'])})" if p else "-")
            lines.append(f"| {st} | " + " | ".join(cells) + " |")
    if s.get("sampling_noise"):
        lines += ["", "## Sampling noise beside seed noise (two samples of each final model)", "",
                  "| arm | log(final / second sample) per seed | sampling sd of log FID | seed sd of log FID |",
                  "|---|---|---|---|"]
        for a, q in s["sampling_noise"].items():
            lines.append(f"| {a} | {', '.join(f'{x:+.3f}' for x in q['log_ratios'])} | {_fmt(q['sampling_sd_log'])} | "
                         f"{_fmt(q['seed_sd_log'])} |")
    pl = s["plan"]
    lines += ["", "## What the spread implies for a registered study", "",
              f"Log FID, alpha {pl['alpha']} over m = {pl['m']} (Bonferroni), power {pl['power']}, the larger per-arm "
              f"sd of log FID ({_fmt(pl['sd_log_fid_max'])}) in both arms and correlation {pl['correlation_assumed']} "
              f"(sd of the differences {_fmt(pl['sd_of_differences'])}):", ""]
    for r, n in pl.get("seeds_to_detect", {}).items():
        lines.append(f"- a ratio of {r}: {n if n else '> 1000'} seeds")
    lines.append(f"- equivalence within a margin of {pl['equivalence_margin']}: "
                 f"{pl.get('seeds_for_equivalence') or '> 1000'} seeds")
    ratios = list(pl.get("seeds_to_detect", {}))
    lines += ["", "Per pair, from the larger of two sds of the log-FID differences: the arms' own sds with correlation 0, "
              "and the observed paired differences' sd at its one-sided 80% upper confidence bound:", "",
              "| a vs b | sd (corr. 0) | sd observed (80% UCB) | pilot ratio: seeds | "
              + " | ".join(f"seeds for {r}x" for r in ratios)
              + f" | seeds for equivalence within {pl['equivalence_margin']} |",
              "|---|---|---|---|" + "---|" * len(ratios) + "---|"]
    for q in pl.get("pairs", []):
        lines.append(f"| {q['a']} vs {q['b']} | {_fmt(q['sd_correlation0'])} | {_fmt(q['sd_observed'])} "
                     f"({_fmt(q['sd_observed_ucb80'])}) | {_fmt(q.get('pilot_ratio'))}: "
                     f"{q.get('seeds_at_pilot_ratio') or '> 1000'} | "
                     + " | ".join(str(q["seeds_to_detect"][r] or "> 1000") for r in ratios)
                     + f" | {q['seeds_for_equivalence'] or '> 1000'} |")
    if s.get("seeds") and len(s["seeds"]) <= 2:
        lines += ["", f"With {len(s['seeds'])} seeds no spread is estimated: no plan is read from this block."]
    if s.get("deviations"):
        lines += ["", "Deviations from the registration (the study file's list, as of this summary):", ""]
        lines += [f"- {d}" for d in s["deviations"]]
    if s.get("corrections"):
        lines += ["", "Corrections made to this block's record by hand: "
                  + "; ".join(f"{c['key']}: {c['recorded']} -> {c['corrected']} ({c['why']})" for c in s["corrections"])]
    return "\n".join(lines) + "\n"


def pilot_job(args):
    from pra.io import write_json, write_text
    from pra.study import load_records, load_study

    study = load_study(args.study)
    recs = [r for r in load_records(study.records) if r["block"]["id"] == args.block]
    if not recs:
        raise SystemExit(f"no record of block {args.block!r} under {study.records}: run it first")
    s = summarise(recs[0], m=args.m)
    s["deviations"] = list(study.deviations)
    source = str(Path(study.records) / args.block)
    write_json(Path(args.out).with_suffix(".json"), s)
    write_text(Path(args.out).with_suffix(".md"), markdown(s, source))
    print(markdown(s, source))
