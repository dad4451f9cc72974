"""Tables built from the pipeline's JSON outputs (pandas -> Markdown). Missing values print as '—'."""
from __future__ import annotations

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
    for r in sorted(rows, key=lambda r: (r["scale"], r["method"], r["seed"])):
        p = probes.get((r["scale"], r["method"], r["seed"]), {})
        recs.append({"scale": r["scale"], "method": r["method"], "seed": r["seed"],
                     "params": fmt(r.get("params")), "steps": fmt(r.get("steps")),
                     "FID ↓": fmt(r.get("fid")), "IS ↑": fmt(r.get("is")), "KID×10³ ↓": fmt(_k(r.get("kid"))),
                     "precision ↑": fmt(r.get("precision"), 3), "recall ↑": fmt(r.get("recall"), 3),
                     "class acc. ↑": fmt(r.get("class_accuracy"), 3),
                     "probe top-1 (layer)": f"{fmt(p.get('top1'), 3)} ({p['layer']})" if p else MISSING,
                     "samples": fmt(r.get("num_samples")), "source": "measured"})
    recs.append({"scale": MISSING, "method": "real val split", "seed": MISSING, "params": MISSING,
                 "steps": MISSING, "FID ↓": fmt(floor.get("fid")), "IS ↑": fmt(floor.get("is")),
                 "KID×10³ ↓": fmt(_k(floor.get("kid"))), "precision ↑": fmt(floor.get("precision"), 3),
                 "recall ↑": fmt(floor.get("recall"), 3), "class acc. ↑": fmt(floor.get("class_accuracy"), 3),
                 "probe top-1 (layer)": MISSING, "samples": fmt(floor.get("num_samples")),
                 "source": "measured (floor)"})
    return to_markdown(pd.DataFrame(recs))


def _k(v):
    return None if v is None else v * 1e3
