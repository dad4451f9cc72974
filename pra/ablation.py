"""One ablation: collect its variants' JSON results over seeds, aggregate, and log to MLflow.

The comparison is rebuilt from the pipeline's JSON files (so it exists without MLflow); MLflow gets one
parent run per ablation and one child per variant carrying the same numbers, for the UI's compare view.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pra.config import ILL_POSED_METHODS, AblationConfig, ExperimentConfig
from pra.config.ablations import reference_name
from pra.endpoints import ACCUMULATION_KEYS, EVAL_KEYS
from pra.io import read_json
from pra.plan import (load_choices, lower_is_better, measured_overrides, path_of, tuning_runs, variant_run)
from pra.analysis import NOT_INTERPRETABLE, analyse
from pra.statistics import Comparison, verdict


def gap_metrics(gap: dict) -> dict[str, float]:
    """Per-run scalars of gap.json: per space and set, the mean over the content positions of each statistic and of
    its excess over the rollout-vs-rollout null."""
    m = {}
    for space, res in gap["spaces"].items():
        for name, row in res["sets"].items():
            for stat, short in (("gaussian_kl", "kl"), ("mmd2", "mmd2")):
                m[f"gap_{space}_{name}_{short}"] = row[f"mean_{stat}"]
                if f"excess_{stat}" in row:
                    m[f"gap_{space}_{name}_{short}_excess"] = row[f"excess_{stat}"]
            if "minus_tf_mmd2" in row:
                m[f"gap_{space}_{name}_mmd2_minus_tf"] = row["minus_tf_mmd2"]
    return m


def variant_metrics(d: Path, *, probe: bool, diagnostics: bool) -> dict[str, float]:
    """The metrics of one run folder: eval.json and train.json always, probe.json when the experiment
    probes (evaluate.probe), gap.json and accumulation.json when the ablation runs its diagnostics: the
    files the ablation rule declares under the same settings (workflow/rules/common.smk)."""
    m = {}
    ev = read_json(d / "eval.json")
    m.update({k: ev[k] for k in EVAL_KEYS if k in ev})
    if probe:
        m["probe_top1"] = read_json(d / "probe.json")["top1"]
    if diagnostics:
        m.update(gap_metrics(read_json(d / "gap.json")))
        a = read_json(d / "accumulation.json")
        m.update({f"acc_{k}": a["summary"][k] for k in ACCUMULATION_KEYS if a["summary"].get(k) is not None})
        ap = read_json(d / "approximation.json")
        if ap["applicable"] and "pra_minus_twin_content_ratio" in ap:
            m.update({f"approx_{k}_content_ratio": ap["constructions"][k]["content_ratio"] for k in ("pra", "twin")})
            m["approx_pra_minus_twin_content_ratio"] = ap["pra_minus_twin_content_ratio"]
    tr = read_json(d / "train.json")
    m["train_seconds"] = tr["seconds"]
    return m


def tuning_scores(ablation: AblationConfig, results: Path) -> dict[str, dict[float, float]]:
    """variant name -> {knob value: primary metric of its tuning run}."""
    scores: dict[str, dict[float, float]] = {}
    for name, value, r in tuning_runs(ablation):
        ev = read_json(path_of(results, r) / "eval.json")
        if ablation.primary_metric not in ev:
            raise KeyError(f"tuning of {ablation.name!r}: eval.json has no {ablation.primary_metric!r}")
        scores.setdefault(name, {})[value] = ev[ablation.primary_metric]
    return scores


def gap_intervals(gap: dict) -> dict:
    """The within-run readings of one gap.json that a single seed can support: per space and construction,
    the MMD^2 minus that of clean inputs with its interval."""
    return {f"{space}/{name}": {"minus_tf_mmd2": row["minus_tf_mmd2"], "ci": row["ci_minus_tf_mmd2"]}
            for space, res in gap["spaces"].items() for name, row in res["sets"].items() if "minus_tf_mmd2" in row}


def accumulation_interval(acc: dict) -> dict:
    """The within-run reading of one accumulation.json that a single seed can support: the full own prefix's
    excess with its interval and the reading the accumulation table gives it (from the interval alone)."""
    full = str(acc["ks"][-1])
    return {"excess": acc["excess"][full], "ci": acc["ci_excess"][full], "reading": acc.get("excess_reading")}


def summarize(cfg: ExperimentConfig, ablation: AblationConfig, results: Path) -> dict:
    choices = load_choices(ablation, results)
    variants, train_code = [], set()
    for v in ablation.variants:
        per_seed, run_ids = [], []
        for seed in ablation.seeds:
            run = variant_run(ablation, v, choices, seed)
            d = path_of(results, run)
            per_seed.append(variant_metrics(d, probe=cfg.evaluate.probe, diagnostics=ablation.diagnostics))
            tr = read_json(d / "train.json")
            run_ids.append(tr.get("mlflow_run_id"))
            train_code.add(tr.get("code_hash"))
        method, vid = run.method, run.variant
        keys = sorted(set().union(*per_seed))
        agg = {}
        for k in keys:
            vals = [m[k] for m in per_seed if k in m]
            agg[k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                      "n": len(vals), "values": vals,  # with the seeds they belong to: pairs are matched by seed
                      "seeds": [s for s, m in zip(ablation.seeds, per_seed) if k in m]}
        first = path_of(results, variant_run(ablation, v, choices, ablation.seeds[0])) / "gap.json"
        variants.append({"name": v.name, "method": method, "variant": vid,
                         "overrides": measured_overrides(ablation, v, choices), "metrics": agg,
                         "mlflow_run_ids": run_ids, "tuning": (choices or {}).get(v.name),
                         "gap_first_seed": gap_intervals(read_json(first)) if ablation.diagnostics else None,
                         "accumulation_first_seed": accumulation_interval(read_json(first.with_name("accumulation.json")))
                         if ablation.diagnostics else None})
    out = {"name": ablation.name, "scale": ablation.scale, "seeds": list(ablation.seeds),
           "train_steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "variants": variants,
           "primary_metric": ablation.primary_metric, "tune_seed": ablation.tune_seed,
           "tune_values": ablation.tune_values,
           # the code of the training jobs pooled here (pra.codehash): more than one means runs trained by
           # different code were pooled
           "train_code_hashes": sorted(str(h) for h in train_code)}
    out["reference"] = reference_name(ablation)
    out["comparisons"], out["hypotheses"], out["analysis"] = analyse(out, ablation)
    out["outcome"] = outcome(out)
    return out


def _get(summary: dict, name: str, key: str):
    for v in summary["variants"]:
        if v["name"] == name and key in v["metrics"]:
            return v["metrics"][key]
    return None


def outcome(summary: dict) -> list[str]:
    """Plain statements of what the measurements say, from the tests, whichever way they go."""
    lines = []
    for h in summary["hypotheses"]:
        c = h["comparison"]
        detail = (f" ({c['mean_a']:.3g} vs {c['mean_b']:.3g}, measured, not read)" if h["outcome"] == NOT_INTERPRETABLE
                  and c and "mean_a" in c else "" if h["outcome"] == NOT_INTERPRETABLE else _detail(c, h["metric"]))
        if not c and h.get("means"):  # no test: the measured values
            detail = f" ({h['means'][0]:.3g} vs {h['means'][1]:.3g}, measured values, not a verdict)"
        lines.append(f"{h['id']} ({h['statement'] or h['variant'] + ' vs ' + h['reference']}; {h['metric']}, "
                     f"expected {h['expect']}): {h['outcome']}{detail}.")
    for c in summary["comparisons"]:
        why = (c.get("declared") or {}).get("why")
        declared = (f" (declared estimate{': ' + why if why else ''})" if "declared" in c else "")
        if c.get("reading"):  # an ill-posed arm: measured, never interpreted
            lines.append(f"{c['metric']}: {c['a']} vs {c['b']}: {c['reading']}.")
        elif c.get("no_interval"):
            lines.append(f"{c['metric']}: {c['a']} vs {c['b']}{declared}: {c['mean_a']:.3g} vs {c['mean_b']:.3g} "
                         f"({c['n_a']} and {c['n_b']} seed(s): too few pairs for an interval; measured values, not a "
                         f"verdict).")
        elif c.get("role") == "estimate":
            lines.append(f"{c['metric']}: {c['a']} vs {c['b']}{declared or ' (estimate, not a test)'}"
                         f"{_detail(c, c['metric'])}.")
        else:
            lines.append(f"{c['metric']}: {c['a']} vs {c['b']}: "
                         f"{verdict(Comparison(**c), lower_is_better(c['metric']))}.")
    ref = summary["reference"]
    refv = next((v for v in summary["variants"] if v["name"] == ref), None)
    seed0 = summary["seeds"][0]
    for space, label in (("inputs", "pixel inputs"), ("hidden", "trunk states h_i")):
        parts = []
        for name in ("teacher_forcing", "reconstruction", "pixel_noise", "pra", "energy_matched", "pra_sequential",
                     "parallel_anchored", "anchored_rollout"):
            ex = _get(summary, ref, f"gap_{space}_{name}_mmd2_excess") if ref else None
            if ex:
                parts.append(f"{name} {ex['mean']:.2g}")
        if not parts:
            continue
        line = (f"Input gap in {label} of the {ref} model (MMD² to its own rollout minus a second rollout's, "
                f"mean over the content positions, {len(summary['seeds'])} seed(s)): " + ", ".join(parts) + ".")
        readings = (refv or {}).get("gap_first_seed") or {}
        for name in ("pra", "pra_sequential"):
            r = readings.get(f"{space}/{name}")
            if r:
                lo, hi = r["ci"]
                word = ("closer to the rollout than clean inputs" if hi < 0 else "farther from the rollout than "
                        "clean inputs" if lo > 0 else "not clearly closer to the rollout than clean inputs")
                what = f"{name} inputs" if space == "inputs" else f"the states of {name} inputs"
                word = word if space == "inputs" else word.replace("clean inputs", "those of clean inputs")
                line += (f" Seed {seed0}: {what} minus clean inputs' {r['minus_tf_mmd2']:+.2g} "
                         f"[{lo:+.2g}, {hi:+.2g}] (95% subsampling interval of one run, not corrected for the "
                         f"other readings of this list): {word}.")
        lines.append(line)
    acc = [(v, v["metrics"]["acc_region_excess"]) for v in summary["variants"] if "acc_region_excess" in v["metrics"]]
    if acc:
        def reading(v, a):
            if v["method"] in ILL_POSED_METHODS:  # its context is another image's: an excess near 0 is built in
                return f"{v['name']} not read (ill-posed arm: it can ignore its context, so ~0 is built in)"
            r = v.get("accumulation_first_seed") if a.get("n") == 1 else None
            if r and r.get("ci"):
                return f"{v['name']} {a['mean']:+.2g} [{r['ci'][0]:+.2g}, {r['ci'][1]:+.2g}]: {r['reading']}"
            return f"{v['name']} {a['mean']:+.2g}"
        lines.append("Error accumulation (class-conditional MMD² of a fixed ink region to held-out real regions, "
                     "after the model's full own prefix minus after the true prefix, paired, mean over seeds; with "
                     "one seed the run's 95% subsampling interval and the accumulation table's reading of it, not "
                     "corrected for the other readings of this list): " + "; ".join(reading(v, a) for v, a in acc) + ".")
    return lines


def _detail(c: dict | None, metric: str) -> str:
    """The numbers behind a reading: Welch's sentence, or a paired test's ratio (or difference) with its
    interval."""
    if not c or c.get("p") is None:
        return ""
    if "diff" in c:
        return f" ({verdict(Comparison(**c), lower_is_better(metric))})"
    lo, hi = c["ci"]
    if c["log"]:
        est = f"ratio {c['ratio']:.3g} [{c['ratio_ci'][0]:.3g}, {c['ratio_ci'][1]:.3g}]"
    else:
        est = f"difference {c['mean_diff']:+.3g} [{lo:+.3g}, {hi:+.3g}]"
    flip = f", sign-flip p = {c['p_sign_flip']:.2g}" if c.get("p_sign_flip") is not None else ""
    return f" ({est} at {c['level']:.1%}; paired t p = {c['p']:.2g}{flip}; {c['n']} seeds)"


def log_to_mlflow(summary: dict, uri: str | None, experiment: str) -> str | None:
    """One parent run per ablation (replacing an earlier one), one child per variant."""
    if not uri:
        return None
    from pra import tracking

    tracking.delete_runs(uri, experiment, "pra.ablation", summary["name"])
    parent = tracking.Run(uri, experiment, f"ablation/{summary['name']}",
                          params={"ablation": summary["name"], "scale": summary["scale"],
                                  "seeds": summary["seeds"], "train_steps": summary["train_steps"]},
                          tags={"pra.ablation": summary["name"], "pra.role": "ablation"})
    for v in summary["variants"]:
        child = tracking.Run(uri, experiment, f"{summary['name']}/{v['name']}", parent_run_id=parent.run_id,
                             params={"variant": v["name"], "method": v["method"], "variant_id": v["variant"],
                                     "overrides": v["overrides"] or "none", "scale": summary["scale"]},
                             tags={"pra.ablation": summary["name"], "pra.role": "variant",
                                   "training_runs": ",".join(str(r) for r in v["mlflow_run_ids"])})
        child.log_metrics({k: m["mean"] for k, m in v["metrics"].items()})
        child.log_metrics({f"{k}_std": m["std"] for k, m in v["metrics"].items() if m["std"] is not None})
        child.end("FINISHED")
    parent.end("FINISHED")
    return parent.run_id


# ---- the command-line job ----------------------------------------------------------------------
def ablation_job(args):
    from pra import tracking
    from pra.io import write_json

    cfg = args.cfg
    ab = {a.name: a for a in cfg.ablations}[args.name]
    summary = summarize(cfg, ab, Path(args.results))
    uri = tracking.uri_of(args.tracking)
    summary["mlflow_parent_run_id"] = log_to_mlflow(summary, uri, cfg.name)
    summary["code_hash"] = args.code_hash
    write_json(args.out, summary)
    print("\n".join(summary["outcome"]))


def tune_job(args):
    from pra.io import write_json
    from pra.plan import choose

    cfg = args.cfg
    ab = {a.name: a for a in cfg.ablations}[args.name]
    choices = choose(ab, tuning_scores(ab, Path(args.results)))
    write_json(args.out, choices)
    print(json.dumps({k: v["value"] for k, v in choices.items()}))
