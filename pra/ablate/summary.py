"""One ablation: collect its variants' JSON results over seeds, aggregate, and log to MLflow.

The comparison is rebuilt from the pipeline's JSON files (so it exists without MLflow); MLflow gets one
parent run per ablation and one child per variant carrying the same numbers, for the UI's compare view.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pra.config import AblationConfig, ExperimentConfig, variant_id
from pra.io import read_json

EVAL_KEYS = ("fid", "is", "kid", "precision", "recall", "class_accuracy")


def run_dir(results: Path, scale: str, method: str, variant: str, seed: int) -> Path:
    return Path(results) / "runs" / scale / method / variant / f"s{seed}"


def variant_metrics(d: Path) -> dict[str, float]:
    m = {}
    ev = read_json(d / "eval.json")
    m.update({k: ev[k] for k in EVAL_KEYS if k in ev})
    if (d / "probe.json").exists():
        m["probe_top1"] = read_json(d / "probe.json")["top1"]
    if (d / "gap.json").exists():
        for name, c in read_json(d / "gap.json")["constructions"].items():
            m[f"gap_{name}_knn_kl"] = c["mean_knn_kl"]
            m[f"gap_{name}_gaussian_kl"] = c["mean_gaussian_kl"]
    if (d / "accumulation.json").exists():
        a = read_json(d / "accumulation.json")
        m["fd_rollout"], m["fd_one_step"], m["fd_accumulated"] = a["mean_fd_rollout"], a["mean_fd_one_step"], \
            a["accumulated"]
    tr = read_json(d / "train.json")
    m["train_seconds"] = tr["seconds"]
    return m


def summarize(cfg: ExperimentConfig, ablation: AblationConfig, results: Path) -> dict:
    variants = []
    for v in ablation.variants:
        method = v.method or ablation.method
        vid = variant_id(v.overrides)
        per_seed, run_ids = [], []
        for seed in ablation.seeds:
            d = run_dir(results, ablation.scale, method, vid, seed)
            per_seed.append(variant_metrics(d))
            run_ids.append(read_json(d / "train.json").get("mlflow_run_id"))
        keys = sorted(set().union(*per_seed))
        agg = {}
        for k in keys:
            vals = [m[k] for m in per_seed if k in m]
            agg[k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                      "n": len(vals), "values": vals}
        variants.append({"name": v.name, "method": method, "variant": vid, "overrides": v.overrides,
                         "metrics": agg, "mlflow_run_ids": run_ids})
    out = {"name": ablation.name, "scale": ablation.scale, "seeds": list(ablation.seeds),
           "train_steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "variants": variants}
    out["outcome"] = outcome(out)
    return out


def _get(summary: dict, name: str, key: str):
    for v in summary["variants"]:
        if v["name"] == name and key in v["metrics"]:
            return v["metrics"][key]
    return None


def _cmp(a: dict, b: dict, lower_is_better: bool = True) -> str:
    """A verdict on a vs b: clearly better/worse only when the difference exceeds twice its seed spread."""
    diff = a["mean"] - b["mean"]
    better = diff < 0 if lower_is_better else diff > 0
    values = f"{a['mean']:.2f} vs {b['mean']:.2f}"
    spread = [s for s in (a["std"], b["std"]) if s is not None]
    if not spread:  # no verdict without a spread: only the direction of one measurement
        return (f"{'lower' if diff < 0 else 'higher'} on one seed ({values}); the seed-to-seed spread is "
                "unknown, so this is not a verdict")
    sd = math.sqrt(sum(s ** 2 for s in spread))
    note = f"sd of the difference {sd:.2f}, {a['n']} seeds"
    if abs(diff) > 2 * sd:
        return f"{'better' if better else 'worse'} ({values}; beyond twice the seed spread, {note})"
    return f"not clearly different ({values}; within twice the seed spread, {note})"


def reference_variant(summary: dict) -> dict | None:
    """The variant the others are compared with: in a one-method ablation, the one without overrides."""
    methods = {v["method"] for v in summary["variants"]}
    base = [v for v in summary["variants"] if not v["overrides"]]
    return base[0] if len(methods) == 1 and len(base) == 1 else None


def outcome(summary: dict) -> list[str]:
    """Plain statements of what the measurements say, whichever way they go."""
    lines = []
    names = {v["name"] for v in summary["variants"]}
    pra = _get(summary, "pra", "fid")
    for other, label in (("latent_tf", "the same architecture trained teacher-forced (latent_tf)"),
                         ("exact_rollout", "exact sequential-rollout training (exact_rollout)"),
                         ("pixel_tf", "pixel-space teacher forcing (pixel_tf)"),
                         ("pixel_noise", "pixel-space noise injection (pixel_noise)")):
        o = _get(summary, other, "fid")
        if pra and o:
            lines.append(f"FID: PRA vs {label}: {_cmp(pra, o)}.")
    ref = reference_variant(summary)
    if ref and "fid" in ref["metrics"]:
        for v in summary["variants"]:
            if v is not ref and "fid" in v["metrics"]:
                lines.append(f"FID: {v['name']} vs {ref['name']}: {_cmp(v['metrics']['fid'], ref['metrics']['fid'])}.")
    for est, label in (("knn_kl", "kNN KL"), ("gaussian_kl", "Gaussian KL (8-d PCA, shrunk covariance)")):
        tf_gap = _get(summary, "pra", f"gap_teacher_forcing_{est}")
        pra_gap = _get(summary, "pra", f"gap_pra_{est}")
        if tf_gap and pra_gap:
            closer = pra_gap["mean"] < tf_gap["mean"]
            lines.append(f"Input gap, {label} to the PRA model's own rollout inputs (mean over positions): PRA's "
                         f"parallel inputs are {'closer to' if closer else 'not closer to'} the rollout than clean "
                         f"teacher-forced inputs ({pra_gap['mean']:.3f} vs {tf_gap['mean']:.3f} nats).")
    acc = {n: _get(summary, n, "fd_accumulated") for n in ("pra", "latent_tf", "exact_rollout") if n in names}
    if all(acc.values()) and acc:
        parts = ", ".join(f"{n} {a['mean']:.2f}" for n, a in acc.items())
        lines.append(f"Error accumulation (mean per-position Frechet distance, rollout minus one-step): {parts}.")
    return lines


def log_to_mlflow(summary: dict, uri: str | None, experiment: str) -> str | None:
    """One parent run per ablation (replacing an earlier one), one child per variant."""
    if not uri:
        return None
    from pra import tracking

    try:
        import mlflow

        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            old = client.search_runs([exp.experiment_id],
                                     filter_string=f"tags.`pra.ablation` = '{summary['name']}'")
            for r in old:
                client.delete_run(r.info.run_id)
    except Exception as e:  # pragma: no cover - tracking never breaks the pipeline
        import warnings

        warnings.warn(f"MLflow cleanup failed ({e})")
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
