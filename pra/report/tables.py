"""Tables built from the pipeline's JSON outputs: pandas -> Markdown and LaTeX (booktabs).

A value that is missing prints as an em dash and the table's notes say why; nothing is filled in.
Output is deterministic (no timestamps, fixed row order), so the same JSON gives byte-identical files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pra.report import published

MISSING = "—"


def fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v / 1e6:.2f}M"
    return str(v)


def mean_sd(m: dict | None, digits: int) -> str:
    if not m:
        return MISSING
    s = f"{m['mean']:.{digits}f}"
    if m.get("std") is not None:
        s += f" ± {m['std']:.{digits}f}"
    return s


@dataclass
class Table:
    name: str
    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        cols = list(self.frame.columns)
        lines = [f"# {self.title}", ""]
        for n in self.notes:
            lines += [n, ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for _, row in self.frame.iterrows():
            lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in cols) + " |")
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        cols = list(self.frame.columns)
        align = "l" * min(2, len(cols)) + "r" * max(0, len(cols) - 2)
        comments = [f"% {ln}" for n in self.notes for ln in n.splitlines() if ln]
        out = [f"% {self.title}", *comments, "\\begin{tabular}{" + align + "}", "\\toprule",
               " & ".join(latex_escape(c) for c in cols) + " \\\\", "\\midrule"]
        for _, row in self.frame.iterrows():
            out.append(" & ".join(latex_escape(str(row[c])) for c in cols) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(out) + "\n"

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        md, tex = folder / f"{self.name}.md", folder / f"{self.name}.tex"
        md.write_text(self.markdown())
        tex.write_text(self.latex())
        return [md, tex]


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "↓": r"$\downarrow$",
          "↑": r"$\uparrow$", "±": r"$\pm$", "×": r"$\times$", "—": "---", "≤": r"$\leq$"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


# ---- the tables -------------------------------------------------------------------------------------
def _run_label(r: dict) -> str:
    v = r.get("variant", "base")
    return r["method"] + ("" if v == "base" else f" [{v}]")


def main_table(rows: list[dict], floor: dict, extractor: str, reference: str, dataset: str) -> Table:
    """Paper layout: method, params, FID, IS, precision, recall, source. Published ImageNet rows first,
    then this pipeline's measured rows (a different dataset and feature space: not comparable)."""
    recs = []
    for model, family, params, fid, is_, source in published.IMAGENET256:
        recs.append({"setting": "ImageNet 256, FID-50K", "method": f"{model} ({family})", "params": f"{params}M",
                     "FID ↓": fmt(fid), "IS ↑": fmt(is_, 1), "precision ↑": MISSING, "recall ↑": MISSING,
                     "source": f"paper: {source}"})
    for r in sorted(rows, key=lambda r: (r["scale"], r["method"], r.get("variant", "base"), r["seed"])):
        recs.append({"setting": dataset, "method": f"{r['scale']} {_run_label(r)} s{r['seed']}",
                     "params": fmt(r.get("params")), "FID ↓": fmt(r.get("fid")), "IS ↑": fmt(r.get("is")),
                     "precision ↑": fmt(r.get("precision"), 3), "recall ↑": fmt(r.get("recall"), 3),
                     "source": f"measured here ({r.get('num_samples')} samples)"})
    recs.append({"setting": dataset, "method": "real val split (floor)", "params": MISSING,
                 "FID ↓": fmt(floor.get("fid")), "IS ↑": fmt(floor.get("is")),
                 "precision ↑": fmt(floor.get("precision"), 3), "recall ↑": fmt(floor.get("recall"), 3),
                 "source": f"measured here ({floor.get('num_samples')} images)"})
    notes = ["Published rows: numbers as reported in the cited papers (class-conditional ImageNet 256x256, "
             "FID-50K against ADM's reference batch; IS only where the PRA paper quotes it; precision/recall "
             "not quoted: —).",
             f"Measured rows: {dataset}; features {extractor}; reference {reference}. These numbers are not "
             "comparable with the ImageNet block: different data, resolution and feature network."]
    return Table("main", "Main comparison", pd.DataFrame(recs), notes)


def runs_table(rows: list[dict], floor: dict, probes: dict, extractor: str, reference: str,
               kid_subset: int, prc_k: int, classifier_acc: float | None) -> Table:
    recs = []
    for r in sorted(rows, key=lambda r: (r["scale"], r["method"], r.get("variant", "base"), r["seed"])):
        p = probes.get((r["scale"], r["method"], r.get("variant", "base"), r["seed"]), {})
        recs.append({"scale": r["scale"], "method": r["method"], "variant": r.get("variant", "base"),
                     "seed": r["seed"], "params": fmt(r.get("params")), "steps": fmt(r.get("steps")),
                     "FID ↓": fmt(r.get("fid")), "IS ↑": fmt(r.get("is")), "KID ↓": fmt(r.get("kid"), 3),
                     "precision ↑": fmt(r.get("precision"), 3), "recall ↑": fmt(r.get("recall"), 3),
                     "class acc. ↑": fmt(r.get("class_accuracy"), 3),
                     "probe top-1 (layer)": f"{fmt(p.get('top1'), 3)} ({p['layer']})" if p else MISSING,
                     "samples": fmt(r.get("num_samples")), "source": "measured"})
    recs.append({"scale": MISSING, "method": "real val split", "variant": MISSING, "seed": MISSING,
                 "params": MISSING, "steps": MISSING, "FID ↓": fmt(floor.get("fid")), "IS ↑": fmt(floor.get("is")),
                 "KID ↓": fmt(floor.get("kid"), 3), "precision ↑": fmt(floor.get("precision"), 3),
                 "recall ↑": fmt(floor.get("recall"), 3), "class acc. ↑": fmt(floor.get("class_accuracy"), 3),
                 "probe top-1 (layer)": MISSING, "samples": fmt(floor.get("num_samples")),
                 "source": "measured (floor)"})
    notes = [f"All rows measured by this pipeline with torch-fidelity. Features: {extractor}. Reference: {reference}. "
             f"FID in float64; IS over 10 splits; KID (unbiased, so it can be slightly negative; its scale follows the "
             f"feature space) with subsets of {kid_subset} (capped at the sample count); "
             f"precision/recall with k={prc_k}."
             + (" Class acc.: fraction of samples the same classifier assigns to the class they were conditioned "
                f"on (the classifier's own val accuracy: {classifier_acc:.3f})." if classifier_acc is not None else "")
             + " Probe: MAE linear-probe top-1 on the val split, layer chosen on a held-out slice of train."
             " The last row is the floor: the real val split scored exactly like a sample."]
    return Table("runs", "Sample quality of every run", pd.DataFrame(recs), notes)


def scaling_table(rows: list[dict], method: str = "pra") -> Table:
    recs = [{"model": f"{m} (paper)", "params": f"{p}M", "FID ↓": fmt(f), "data": "ImageNet 256, FID-50K",
             "source": f"paper: {s}"} for m, fam, p, f, _, s in published.IMAGENET256 if m.startswith("PRA-")]
    for r in sorted((r for r in rows if r["method"] == method and r.get("variant", "base") == "base"),
                    key=lambda r: (r.get("params") or 0, r["seed"])):
        recs.append({"model": f"{r['scale']} s{r['seed']}", "params": fmt(r.get("params")), "FID ↓": fmt(r.get("fid")),
                     "data": "embedded digits 32x32 (classifier features)", "source": "measured here"})
    return Table("scaling", f"Scaling of {method}", pd.DataFrame(recs),
                 ["Paper rows and measured rows use different data and features; compare trends, not values."])


def probe_table(probes: dict) -> Table:
    recs = [{"model": "PRA-L (paper)", "layer": MISSING, "top-1 ↑": fmt(published.PRA_L_LINEAR_PROBE_TOP1 / 100, 4),
             "top-5 ↑": MISSING, "per-layer held-out top-1": MISSING, "fast probe top-1 per layer": MISSING,
             "source": "paper: ImageNet-1K linear probe"}]
    for key in sorted(probes):
        p = probes[key]
        scale, method, variant, seed = key
        recs.append({"model": f"{scale} {method}" + ("" if variant == "base" else f" [{variant}]") + f" s{seed}",
                     "layer": str(p["layer"]), "top-1 ↑": fmt(p["top1"], 3), "top-5 ↑": fmt(p["top5"], 3),
                     "per-layer held-out top-1": " ".join(fmt(x["holdout_top1"], 2) for x in p["per_layer_holdout"]),
                     "fast probe top-1 per layer": " ".join(fmt(x["top1"], 2) for x in p["fast_probe"]),
                     "source": "measured here (embedded digits val split)"})
    return Table("probe", "Linear probing", pd.DataFrame(recs),
                 ["MAE protocol on the frozen EMA generator (null label, teacher-forced on clean images, "
                  "average-pooled block output, BN without affine + linear, LARS, warm-up + cosine); the layer is "
                  "chosen on a held-out slice of train and reported on val. Fast probe (Adam, one head per layer): "
                  "labelled, for ablations only."])


ABLATION_COLUMNS = [  # (metric key, header, digits)
    ("fid", "FID ↓", 2), ("is", "IS ↑", 2), ("precision", "precision ↑", 3), ("recall", "recall ↑", 3),
    ("class_accuracy", "class acc. ↑", 3), ("probe_top1", "probe top-1 ↑", 3),
    ("gap_teacher_forcing_knn_kl", "gap: TF inputs (kNN KL)", 3), ("gap_pra_knn_kl", "gap: PRA inputs (kNN KL)", 3),
    ("fd_one_step", "FD one-step", 2), ("fd_rollout", "FD rollout", 2),
]


def ablation_table(summary: dict) -> Table:
    """One row per variant, mean ± sd over seeds; the measured outcome follows in the notes."""
    cols = [c for c in ABLATION_COLUMNS if any(c[0] in v["metrics"] for v in summary["variants"])]
    recs = []
    for v in summary["variants"]:
        rec = {"variant": v["name"], "method": v["method"],
               "overrides": json.dumps(v["overrides"], sort_keys=True) if v["overrides"] else MISSING}
        for key, head, digits in cols:
            rec[head] = mean_sd(v["metrics"].get(key), digits)
        recs.append(rec)
    n = len(summary["seeds"])
    notes = [f"{summary['scale']}, {summary['train_steps']} steps at batch {summary['batch_size']} for every variant, "
             f"{n} seed{'s' if n > 1 else ''} {summary['seeds']}. All numbers measured by this pipeline; mean ± sample "
             "standard deviation over seeds" + (" (one seed: no spread)." if n == 1 else ".")
             + " Gap: kNN estimate of KL(inputs of that construction || inputs of the model's own sequential "
             "rollout), mean over AR positions, fixed 8-d PCA basis. FD: per-position Frechet distance to real "
             "patches (same basis), mean over positions, generated from the true prefix (one-step) or in a full "
             "rollout."]
    if summary.get("outcome"):
        notes.append("Outcome, as measured:\n\n" + "\n".join(f"- {line}" for line in summary["outcome"]))
    return Table(f"ablation_{summary['name']}", f"Ablation `{summary['name']}`", pd.DataFrame(recs), notes)
