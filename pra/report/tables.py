"""Tables built from the pipeline's JSON outputs (pandas -> Markdown). Missing values print as '—'."""
from __future__ import annotations

import json
import math

import pandas as pd

MISSING = "—"


def fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v / 1e6:.2f}M"
    return str(v)


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def fid_table(rows: list[dict], floor: dict, probes: dict | None = None) -> str:
    """rows: eval.json of each (scale, method, seed); floor: the real validation split scored the same way."""
    probes = probes or {}
    recs = []
    for r in sorted(rows, key=lambda r: (r["scale"], r["method"], r.get("variant", "base"), r["seed"])):
        p = probes.get((r["scale"], r["method"], r.get("variant", "base"), r["seed"]), {})
        recs.append({"scale": r["scale"], "method": r["method"], "variant": r.get("variant", "base"),
                     "seed": r["seed"],
                     "params": fmt(r.get("params")), "steps": fmt(r.get("steps")),
                     "FID ↓": fmt(r.get("fid")), "IS ↑": fmt(r.get("is")), "KID×10³ ↓": fmt(_k(r.get("kid"))),
                     "precision ↑": fmt(r.get("precision"), 3), "recall ↑": fmt(r.get("recall"), 3),
                     "class acc. ↑": fmt(r.get("class_accuracy"), 3),
                     "probe top-1 (layer)": f"{fmt(p.get('top1'), 3)} ({p['layer']})" if p else MISSING,
                     "samples": fmt(r.get("num_samples")), "source": "measured"})
    recs.append({"scale": MISSING, "method": "real val split", "variant": MISSING, "seed": MISSING, "params": MISSING,
                 "steps": MISSING, "FID ↓": fmt(floor.get("fid")), "IS ↑": fmt(floor.get("is")),
                 "KID×10³ ↓": fmt(_k(floor.get("kid"))), "precision ↑": fmt(floor.get("precision"), 3),
                 "recall ↑": fmt(floor.get("recall"), 3), "class acc. ↑": fmt(floor.get("class_accuracy"), 3),
                 "probe top-1 (layer)": MISSING, "samples": fmt(floor.get("num_samples")),
                 "source": "measured (floor)"})
    return to_markdown(pd.DataFrame(recs))


def _k(v):
    return None if v is None else v * 1e3


ABLATION_COLUMNS = [  # (metric key, header, digits, scale)
    ("fid", "FID ↓", 2, 1), ("is", "IS ↑", 2, 1), ("precision", "precision ↑", 3, 1), ("recall", "recall ↑", 3, 1),
    ("class_accuracy", "class acc. ↑", 3, 1), ("probe_top1", "probe top-1 ↑", 3, 1),
    ("gap_teacher_forcing_knn_kl", "gap: TF inputs (kNN KL)", 3, 1), ("gap_pra_knn_kl", "gap: PRA inputs (kNN KL)", 3, 1),
    ("fd_one_step", "FD one-step", 2, 1), ("fd_rollout", "FD rollout", 2, 1), ("train_seconds", "train s", 0, 1),
]


def mean_sd(m: dict | None, digits: int) -> str:
    if not m:
        return MISSING
    s = f"{m['mean']:.{digits}f}"
    if m.get("std") is not None:
        s += f" ± {m['std']:.{digits}f}"
    return s


def ablation_table(summary: dict) -> str:
    """One row per variant, mean ± sd over seeds; followed by the measured outcome."""
    cols = [c for c in ABLATION_COLUMNS if any(c[0] in v["metrics"] for v in summary["variants"])]
    recs = []
    for v in summary["variants"]:
        rec = {"variant": v["name"], "method": v["method"],
               "overrides": json.dumps(v["overrides"], sort_keys=True) if v["overrides"] else MISSING}
        for key, head, digits, _ in cols:
            rec[head] = mean_sd(v["metrics"].get(key), digits)
        recs.append(rec)
    n = len(summary["seeds"])
    head = (f"# Ablation `{summary['name']}` ({summary['scale']}, {summary['train_steps']} steps at batch "
            f"{summary['batch_size']} for every variant, {n} seed{'s' if n > 1 else ''}: {summary['seeds']})\n\n"
            "All numbers measured by this pipeline; mean ± sample standard deviation over seeds"
            + (" (one seed: no spread)" if n == 1 else "") + ". Gap columns: kNN estimate of KL(inputs of "
            "that construction || inputs of the model's own sequential rollout), mean over AR positions, in a "
            "fixed 8-d PCA basis. FD: per-position Frechet distance to real patches (same basis), mean over "
            "positions, for patches generated from the true prefix (one-step) and in a full rollout.\n\n")
    body = to_markdown(pd.DataFrame(recs))
    outcome = "\n## Outcome, as measured\n\n" + "".join(f"- {line}\n" for line in summary.get("outcome", [])) \
        if summary.get("outcome") else ""
    return head + body + outcome
