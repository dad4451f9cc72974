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


def fid_table(rows: list[dict], floor: dict) -> str:
    """rows: one dict per (scale, method, seed) with train/eval results; floor: classifier info."""
    recs = []
    for r in sorted(rows, key=lambda r: (r["scale"], r["method"], r["seed"])):
        recs.append({"scale": r["scale"], "method": r["method"], "seed": r["seed"],
                     "params": fmt(r.get("params")), "steps": fmt(r.get("steps")),
                     "FID ↓": fmt(r.get("fid")), "class acc. ↑": fmt(r.get("class_accuracy"), 3),
                     "samples": fmt(r.get("num_samples")), "source": "measured"})
    recs.append({"scale": "—", "method": "real val split", "seed": "—", "params": "—", "steps": "—",
                 "FID ↓": fmt(floor.get("fid_val_vs_train")), "class acc. ↑": fmt(floor.get("val_accuracy"), 3),
                 "samples": fmt(floor.get("val_count")), "source": "measured (floor)"})
    return to_markdown(pd.DataFrame(recs))
