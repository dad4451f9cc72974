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

from pra.io import write_text
from pra.config import ILL_POSED_METHODS
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


def fixed(x: float, digits: int, sign: str = "") -> str:
    """x with `digits` decimals; a non-zero value that would print as (-)0.00.. is shown by its size instead
    (-2.6e-05), so that neither a sign nor an interval's bound is lost to rounding."""
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:{sign}.1e}"
    return f"{x:{sign}.{digits}f}"


def mean_sd(m: dict | None, digits: int) -> str:
    if not m:
        return MISSING
    s = fixed(m["mean"], digits)
    if m.get("std") is not None:
        s += f" ± {fixed(m['std'], digits)}"
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
        write_text(md, self.markdown())
        write_text(tex, self.latex())
        return [md, tex]


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "↓": r"$\downarrow$",
          "↑": r"$\uparrow$", "±": r"$\pm$", "×": r"$\times$", "—": "---", "≤": r"$\leq$"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


# ---- the tables -------------------------------------------------------------------------------------
def run_name(scale: str, method: str, variant: str) -> str:
    """A run's name without its seed: scale, method and its overrides ([...]) where it has any."""
    return f"{scale} {method}" + ("" if variant == "base" else f" [{variant}]")


def run_label(key: tuple) -> str:
    """(scale, method, variant, seed) as the tables and the figures name a run."""
    scale, method, variant, seed = key
    return run_name(scale, method, variant) + f" s{seed}"


def main_table(rows: list[dict], floor: dict, extractor: str, reference: str, dataset: str) -> Table:
    """Paper layout: method, params, FID, IS, precision, recall, source. Published ImageNet rows first,
    then this pipeline's measured rows (a different dataset and feature space: not comparable)."""
    recs = []
    for model, family, params, fid, is_, source in published.IMAGENET256:
        recs.append({"setting": "ImageNet 256, FID-50K", "method": f"{model} ({family})", "params": f"{params}M",
                     "FID ↓": fmt(fid), "IS ↑": fmt(is_, 1), "precision ↑": MISSING, "recall ↑": MISSING,
                     "source": f"paper: {source}"})
    for r in sorted(rows, key=lambda r: (r["scale"], r["method"], r.get("variant", "base"), r["seed"])):
        label = run_label((r["scale"], r["method"], r.get("variant", "base"), r["seed"]))
        recs.append({"setting": dataset, "method": label,
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
             + " Probe: MAE-style linear-probe top-1 on the val split, layer chosen on a held-out slice of train."
             " The last row is the floor: the real val split scored exactly like a sample."]
    return Table("runs", "Sample quality of every run", pd.DataFrame(recs), notes)


def scaling_table(rows: list[dict], method: str = "pra", dataset: str = "embedded digits 32x32") -> Table:
    recs = [{"model": f"{m} (paper)", "params": f"{p}M", "FID ↓": fmt(f), "data": "ImageNet 256, FID-50K",
             "source": f"paper: {s}"} for m, fam, p, f, _, s in published.IMAGENET256 if m.startswith("PRA-")]
    for r in sorted((r for r in rows if r["method"] == method and r.get("variant", "base") == "base"),
                    key=lambda r: (r.get("params") or 0, r["seed"])):
        recs.append({"model": f"{r['scale']} s{r['seed']}", "params": fmt(r.get("params")), "FID ↓": fmt(r.get("fid")),
                     "data": f"{dataset} (classifier features)", "source": "measured here"})
    return Table("scaling", f"Scaling of {method}", pd.DataFrame(recs),
                 ["Paper rows and measured rows use different data and features; compare trends, not values."])


def along_training_table(along: dict) -> Table:
    """along: (scale, method, variant, seed) -> along_training.json. Proxy FID per snapshot, EMA and raw."""
    recs, cost, n = [], [], None
    for key in sorted(along):
        scale, method, variant, seed = key
        d = along[key]
        cost.append(d["seconds_per_evaluation"])
        by_step: dict[int, dict] = {}
        for r in d["rows"]:
            by_step.setdefault(r["step"], {})[r["weights"]] = r
            n = r["num_samples"]
        for step in sorted(by_step):
            e, w = by_step[step].get("ema", {}), by_step[step].get("raw", {})
            recs.append({"run": run_label(key),
                         "step": step, "proxy FID ↓ (EMA)": fmt(e.get("fid")), "proxy FID ↓ (raw)": fmt(w.get("fid")),
                         "class acc. ↑ (EMA)": fmt(e.get("class_accuracy")),
                         "class acc. ↑ (raw)": fmt(w.get("class_accuracy"))})
    notes = [f"Proxy samples of {n} images per evaluation (evaluate.snapshot_per_class per class, seed "
             f"evaluate.snapshot_seed, apart from the final sample): their FID is biased upward and noisier than "
             f"the final evaluation's; they show the trend along training and EMA vs raw weights. The last step "
             f"of each run is its final model. Cost: {fmt(sum(cost) / len(cost) if cost else None, 1)} s per "
             f"evaluation (one checkpoint, one set of weights; mean over the runs)."]
    return Table("along_training", "Evaluation along training", pd.DataFrame(recs), notes)


def guidance_table(guidance: dict) -> Table:
    """guidance: (scale, method, variant, seed) -> guidance.json. Proxy FID per guidance scale, the choice."""
    recs, n = [], None
    for key in sorted(guidance):
        scale, method, variant, seed = key
        g = guidance[key]
        for r in g["rows"]:
            n = r.get("num_samples", n)
            recs.append({"run": run_label(key),
                         "guidance scale": fmt(r["cfg_scale"]),
                         "proxy FID ↓": "non-finite samples" if "non_finite" in r else fmt(r["fid"]),
                         "class acc. ↑": fmt(r.get("class_accuracy")),
                         "chosen": "yes" if r["cfg_scale"] == g["chosen"] else "", "seconds": fmt(r.get("seconds"), 1)})
    notes = [f"Proxy samples of {n} images per guidance scale (sample.sweep_per_class per class, seed "
             "sample.sweep_seed, apart from the final sample's seed); the lowest proxy FID is chosen and the final "
             "sample is drawn at it. Proxy FIDs are biased upward: they rank the scales."]
    return Table("guidance", "Guidance sweep", pd.DataFrame(recs), notes)


def probe_table(probes: dict, dataset: str = "embedded digits 32x32") -> Table:
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
                     "source": f"measured here ({dataset.rsplit(' ', 1)[0]} val split)"})
    return Table("probe", "Linear probing", pd.DataFrame(recs),
                 ["MAE's probe recipe on the frozen EMA generator (null label, teacher-forced on clean images, "
                  "average-pooled block output, BN without affine + linear, LARS, warm-up + cosine), without its "
                  "augmentation; the layer is chosen on a held-out slice of train (iGPT's choice; MAE probes the last "
                  "layer) and reported on val. Fast probe (Adam, one head per layer): "
                  "labelled, for ablations only."])


ABLATION_COLUMNS = [  # (metric key, header, digits)
    ("fid", "FID ↓", 2), ("is", "IS ↑", 2), ("precision", "precision ↑", 3), ("recall", "recall ↑", 3),
    ("class_accuracy", "class acc. ↑", 3), ("probe_top1", "probe top-1 ↑", 3),
    ("gap_inputs_teacher_forcing_mmd2_excess", "gap TF inputs", 4),
    ("gap_inputs_pra_mmd2_excess", "gap PRA inputs", 4),
    ("gap_inputs_pra_sequential_mmd2_excess", "gap twin inputs", 4),
    ("gap_hidden_pra_mmd2_minus_tf", "PRA h − clean h (within row)", 4),
    ("acc_region_excess", "region excess (MMD²)", 4), ("acc_feedback_effect", "feedback effect (agreement)", 3),
]


def ablation_table(summary: dict) -> Table:
    """One row per variant, mean ± sd over seeds; the measured outcome follows in the notes."""
    cols = [c for c in ABLATION_COLUMNS if any(c[0] in v["metrics"] for v in summary["variants"])]
    recs = []
    for v in summary["variants"]:
        rec = {"variant": v["name"], "method": v["method"],
               "overrides": json.dumps(v["overrides"], sort_keys=True) if v["overrides"] else MISSING}
        if any(x.get("tuning") for x in summary["variants"]):
            t = v.get("tuning")
            rec["tuned on seed " + str(summary.get("tune_seed"))] = MISSING if not t else (
                f"{t['knob']} = {t['value']:g} (" + ", ".join(f"{s['value']:g}: {s[t['metric']]:.3g}" for s in t["scores"])
                + f" {t['metric']})")
        ill = v["method"] in ILL_POSED_METHODS
        for key, head, digits in cols:
            diag = key.startswith(("gap_", "acc_"))
            rec[head] = mean_sd(v["metrics"].get(key), digits) + (" (not read)" if ill and diag and
                                                                 v["metrics"].get(key) else "")
        recs.append(rec)
    n = len(summary["seeds"])
    notes = [f"{summary['scale']}, {summary['train_steps']} steps at batch {summary['batch_size']} for every variant, "
             f"{n} seed{'s' if n > 1 else ''} {summary['seeds']}. All numbers measured by this pipeline; mean ± sample "
             "standard deviation over seeds" + (" (one seed: no spread)." if n == 1 else ".")
             + " gap: MMD² between that construction's trunk inputs (or the trunk states h they produce) and the "
             "model's own sequential rollout, minus the same statistic for a second independent rollout (the null), "
             "mean over the content positions, on held-out images; 0 = as close as another rollout. Pixel inputs are "
             "one space for every model; trunk states h are each model's own, so the h column is read within its "
             "row only: the PRA inputs' states' gap minus the clean inputs' states' gap of the same model (negative "
             "= closer to its own rollout than clean inputs). Region excess: class-conditional "
             "unbiased MMD² of a fixed region where real images have ink to held-out real regions of the same class, "
             "generated after the model's full own prefix minus after the true prefix (paired by image and start "
             "noise); feedback effect: the classifier's agreement with the label of completed images whose prefix "
             "positions were each generated from the true patches before them (not fed back), minus that of the "
             "full own rollout. Intervals: the gap and accumulation tables; tests: the tests table. '(not read)': "
             "an ill-posed arm (its inputs belong to another image than its target, so the model can ignore its "
             "context): its gaps and accumulation near 0 are built in, measured but not read."]
    if summary.get("outcome"):
        notes.append("Outcome, as measured:\n\n" + "\n".join(f"- {line}" for line in summary["outcome"]))
    return Table(f"ablation_{summary['name']}", f"Ablation `{summary['name']}`", pd.DataFrame(recs), notes)


SEED_COLUMNS = [("fid", "FID ↓", 2), ("class_accuracy", "class acc. ↑", 3),
                ("acc_region_excess", "region excess (MMD²)", 4)]


def mean_interval(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, lo, hi): the mean over seeds and its 95% t-interval (seeds as independent replicates); None
    with fewer than 2 values."""
    import numpy as np
    from scipy import stats

    if len(values) < 2:
        return None
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def seeds_table(summary: dict) -> Table:
    """Per variant: the endpoints' mean over training seeds with its 95% t-interval, and every seed's value."""
    recs = []
    for v in summary["variants"]:
        rec = {"variant": v["name"], "seeds": v["metrics"].get("fid", {}).get("n", len(summary["seeds"]))}
        for key, head, digits in SEED_COLUMNS:
            m = v["metrics"].get(key)
            if not m:
                continue
            mi = mean_interval(m["values"])
            rec[head + " mean [95% CI]"] = (fixed(m["mean"], digits) if mi is None else
                                            f"{fixed(mi[0], digits)} [{fixed(mi[1], digits)}, {fixed(mi[2], digits)}]")
            rec[head + " per seed"] = ", ".join(fixed(x, digits) for x in m["values"])
            if key.startswith("acc_") and v["method"] in ILL_POSED_METHODS:
                rec[head + " mean [95% CI]"] += " (not read: ill-posed arm)"
        recs.append(rec)
    notes = [f"{summary['scale']}, {summary['train_steps']} steps at batch {summary['batch_size']}, seeds "
             f"{summary['seeds']} (each a separately trained model, sampled and evaluated alike). Mean over seeds "
             "with its 95% t-interval (n - 1 degrees of freedom; the seed-to-seed spread, not the sampling error "
             "of one model). Per-seed values in seed order. Comparisons and their correction: the tests table."]
    return Table(f"seeds_{summary['name']}", f"Endpoints per seed, ablation `{summary['name']}`",
                 pd.DataFrame(recs), notes)


def _ci(ci, digits) -> str:
    return MISSING if ci is None else f"[{fixed(ci[0], digits, '+')}, {fixed(ci[1], digits, '+')}]"


def _with_ci(d: dict, key: str, ci_key: str, digits: int, sign: str = "+") -> str:
    """'value [lo, hi]' of d[key] and d[ci_key]; the value alone without an interval; a dash when absent."""
    if key not in d:
        return MISSING
    return fixed(d[key], digits, sign) + (f" {_ci(d[ci_key], digits)}" if ci_key in d else "")


def _ci_text(value: float, ci, digits: int) -> str:
    """'value [lo, hi]', the value alone where there is no interval."""
    return fixed(value, digits, "+") + (f" {_ci(ci, digits)}" if ci else "")


def _why(c: dict) -> str:
    """What a declared estimate separates, as the ablation states it ('' for other rows)."""
    why = (c.get("declared") or {}).get("why")
    return f" (declared: {why})" if why else ""


def tests_table(summary: dict) -> Table:
    """Every comparison the ablation words, each distinct one once: the declared hypotheses, then each
    variant vs the reference, then the declared estimates, with the registered analysis (pra.analysis) and, under welch_holm, the paired
    sensitivity analysis beside it."""
    from pra.statistics import Comparison, verdict

    recs = []
    analysis = summary.get("analysis") or {"analysis": "welch_holm", "text": ""}
    rows = [(h["id"], h["comparison"] or ({"a": h["variant"], "b": h["reference"], "metric": h["metric"],
                                            "no_interval": True, "mean_a": h["means"][0], "mean_b": h["means"][1],
                                            "n_a": h["n"][0], "n_b": h["n"][1]} if h.get("means") else None),
             h["outcome"], h.get("sensitivity")) for h in summary.get("hypotheses", [])]
    rows += [("vs reference" if c.get("role") != "estimate" else "declared estimate" if "declared" in c
              else "estimate", c, None, None) for c in summary.get("comparisons", [])]
    for label, c, out, sens in rows:
        rec = {"test": label, "comparison": MISSING, "metric": MISSING, "means": MISSING,
               "estimate [interval]": MISSING, "seeds": MISSING, "p": MISSING, "p (family)": MISSING,
               "reading": out}
        if c is not None and "diff" in c:  # Welch
            rec.update({"comparison": f"{c['a']} − {c['b']}", "metric": c["metric"],
                        "means": f"{c['mean_a']:.4g} vs {c['mean_b']:.4g}",
                        "estimate [interval]": (f"{c['diff']:+.4g} {_ci(c['ci'], 3)} (95%)" if c["ci"]
                                                else f"{c['diff']:+.4g}"),
                        "seeds": f"{c['n_a']}, {c['n_b']}", "p": f"{fmt(c['p'], 3)} (Welch)",
                        "p (family)": f"{fmt(c['p_holm'], 3)} (Holm)",
                        "reading": out or c.get("reading") or verdict(Comparison(**{k: v for k, v in c.items()
                                                                                   if k != "reading"})).split(" (")[0]})
        elif c is not None and c.get("no_interval"):  # paired analysis, too few pairs: the measured means
            rec.update({"comparison": f"{c['a']} vs {c['b']}", "metric": c["metric"],
                        "means": f"{c['mean_a']:.4g} vs {c['mean_b']:.4g}", "seeds": f"{c['n_a']}, {c['n_b']}",
                        "estimate [interval]": "— (too few pairs)", "p": "— (no test)" if out else "— (estimate)",
                        "reading": out or c.get("reading") or "measured values, no interval: not a verdict"
                        + _why(c)})
        elif c is not None:  # paired
            est = (f"ratio {c['ratio']:.3g} [{c['ratio_ci'][0]:.3g}, {c['ratio_ci'][1]:.3g}]" if c["log"] and c["ratio_ci"]
                   else f"{c['mean_diff']:+.4g} {_ci(c['ci'], 3)}" if c["ci"] else f"{c['mean_diff']:+.4g}")
            rec.update({"comparison": f"{c['a']} − {c['b']}" if not c["log"] else f"{c['a']} / {c['b']}",
                        "metric": c["metric"] + (" (log)" if c["log"] else ""),
                        "estimate [interval]": f"{est} ({c['level']:.1%})", "seeds": f"{c['n']} pairs",
                        "p": (f"{fmt(c['p'], 3)} (paired t)" + (f"; sign-flip {fmt(c['p_sign_flip'], 3)}"
                                                                  if c.get("p_sign_flip") is not None else "")
                              if not label.endswith("estimate") else "— (estimate)"),
                        "p (family)": (f"compared with alpha/m = {1 - c['level']:.3g} (Bonferroni)"
                                       if not label.endswith("estimate") else MISSING),
                        "reading": out or c.get("reading") or "estimate, not a test" + _why(c)})
        if sens and sens.get("comparison"):
            s_ = sens["comparison"]
            rec["sensitivity (paired, deviation)"] = (
                (f"ratio {s_['ratio']:.3g} [{s_['ratio_ci'][0]:.3g}, {s_['ratio_ci'][1]:.3g}]" if s_["log"] and s_["ratio_ci"]
                 else f"{s_['mean_diff']:+.3g} [{s_['ci'][0]:+.3g}, {s_['ci'][1]:+.3g}]" if s_["ci"] else MISSING)
                + (f" ({s_['level']:.2%})" if s_.get("level") else "")
                + (f", p = {fmt(s_['p'], 3)}" + (f" (Holm {fmt(sens['p_holm'], 3)})" if sens.get("p_holm") is not None
                                                   else "") + f": {sens['outcome']}" if s_["p"] is not None else ""))
        recs.append(rec)
    df = pd.DataFrame(recs)
    if "sensitivity (paired, deviation)" in df:
        df["sensitivity (paired, deviation)"] = df["sensitivity (paired, deviation)"].fillna(MISSING)
    notes = [analysis.get("text") or "",
             "A difference is called only at the family's level; otherwise 'not clearly different', whatever the "
             "means. 'Equal' is never read from a non-significant test. Fewer than 2 seeds on a side: no test."]
    return Table(f"tests_{summary['name']}", f"Tests of ablation `{summary['name']}`", df, notes)


def gap_table(name: str, gaps: dict) -> Table:
    """gaps: variant -> gap.json of one seed. Every construction and the null, both spaces, both statistics."""
    recs = []
    order = ("teacher_forcing", "reconstruction", "pixel_noise", "pra", "energy_matched", "pra_sequential",
             "parallel_anchored", "anchored_rollout", "rollout_null")
    for variant, g in gaps.items():
        for space in ("inputs", "hidden"):
            res = g["spaces"][space]
            for cname in sorted(res["sets"], key=lambda c: order.index(c) if c in order else len(order)):
                row = res["sets"][cname]
                recs.append({
                    "model": variant, "space": {"inputs": "pixel inputs", "hidden": "trunk states h"}[space],
                    "construction": "null: rollout vs rollout" if cname == "rollout_null" else cname,
                    "MMD² [95% CI]": _with_ci(row, "mean_mmd2", "ci_mmd2", 4, sign=""),
                    "perm. p": fmt(row["mmd2_mean_p"], 3),
                    "MMD² − null [95% CI]": _with_ci(row, "excess_mmd2", "ci_excess_mmd2", 4),
                    "MMD² − clean inputs' [95% CI]": _with_ci(row, "minus_tf_mmd2", "ci_minus_tf_mmd2", 4),
                    "MMD² / clean inputs'": fmt(row.get("ratio_to_tf_mmd2"), 2),
                    "distance to true patch": fmt(row.get("mean_distance_to_true"), 3),
                    "Gaussian KL": _with_ci(row, "mean_gaussian_kl", "", 3, sign=""),
                    "KL − null [95% CI]": _with_ci(row, "excess_gaussian_kl", "ci_excess_gaussian_kl", 3)})
    g0 = next(iter(gaps.values()))
    st = g0["settings"]
    content = st.get("content_rule", "every position")
    notes = [f"Each model's training-input constructions vs its own sequential rollout, per AR position then averaged "
             f"over the content positions ({content}); "
             f"{st['images']} held-out (val) images; {st['pca_dim']}-d PCA bases fitted on {st['pca_fitted_on']}; "
             f"{st['preprocessing']}. The null row compares a second independent rollout with the first: it shows "
             f"where zero and sampling noise lie (the Gaussian KL is a plug-in estimate, biased upwards at this "
             f"sample size, so only its excess over the null gets an interval). MMD²: unbiased, Gaussian kernel "
             f"({st['kernel']}); perm. p: {st['permutations']} permutations of images, jointly over positions. "
             f"Intervals: {st['subsamples']} subsets of half the images without replacement (delete-d jackknife "
             f"scaling); the excess interval pairs the construction and the null on the same images, and so does "
             f"the interval of a construction's MMD² minus that of clean (teacher-forced) inputs, the within-model "
             f"reading of the premise (negative = closer to the model's own rollout than clean inputs); in trunk "
             f"states, MMD² / clean inputs' is the only reading to compare across models, each having its own "
             f"representation. Distance to true patch: mean Euclidean distance of the construction's pixel inputs "
             f"to the clean patches ([-1, 1] pixels), the anchoring beside each gap. "
             f"Model: seed {g0['model']['seed']}, EMA weights."]
    return Table(f"gap_{name}", f"Input-distribution gap, ablation `{name}`", pd.DataFrame(recs), notes)


def approximation_table(name: str, approx: dict) -> Table:
    """approx: variant -> approximation.json (first seed). The approximation error over content positions. A
    column names each model's perturbation law when any model's is not the default interpolant."""
    recs, settings = [], None
    laws = {a["settings"].get("perturbation_law", "interpolant") for a in approx.values() if a.get("applicable")}
    for variant, a in approx.items():
        if not a.get("applicable"):
            recs.append({"model": variant, "t_min": MISSING,
                         **({"law": MISSING} if laws != {"interpolant"} else {}), "PRA / anchored [95% CI]": MISSING,
                         "twin / anchored [95% CI]": MISSING,
                         "PRA − twin [95% CI]": MISSING, "anchored to data": MISSING})
            continue
        settings = a["settings"]
        c = a["constructions"]
        cols = [p - 1 for p in a["content_positions"]]
        recs.append({"model": variant, "t_min": fmt(settings["t_min"], 2),
                     **({"law": settings.get("perturbation_law", "interpolant")} if laws != {"interpolant"} else {}),
                     "PRA / anchored [95% CI]": _with_ci(c["pra"], "content_ratio", "ci_content_ratio", 3, sign=""),
                     "twin / anchored [95% CI]": _with_ci(c["twin"], "content_ratio", "ci_content_ratio", 3, sign=""),
                     "PRA − twin [95% CI]": _with_ci(a, "pra_minus_twin_content_ratio",
                                                     "ci_pra_minus_twin_content_ratio", 3),
                     "anchored to data": fmt(sum(a["anchored_to_true"][j] for j in cols) / len(cols), 3)
                     if cols else MISSING})
    notes = []
    if settings:
        notes = [f"How far each cheap construction's inputs lie from the anchored sequential rollout's, built from "
                 f"the same (t, eps) draws on {settings['images']} {settings['split']} images: {settings['ratio']}, "
                 f"over the content positions ({settings['content_rule']}); 0 = the sequential inputs exactly. "
                 f"Anchored sampler: {settings['anchored_sampler']}; t_min: each model's own. 95% subsampling "
                 f"intervals (half the images, rescaled; paired across columns). Pixel-space models have no state "
                 f"to perturb: —."]
        if laws != {"interpolant"}:
            notes.append("Perturbation laws (method.perturbation_law): PRA's and the twin's states follow each "
                         "model's own law; the anchored rollout starts on the flow's path t z + (1 - t) eps from the "
                         "same draws whatever the law, so under another law the ratios include the law's distance "
                         "from that path.")
    return Table(f"approximation_{name}", f"Approximation error, ablation `{name}`", pd.DataFrame(recs), notes)


def accumulation_table(name: str, accs: dict, ill_posed: tuple = ()) -> Table:
    """One row per model (its first seed): the region's distance after the true and the full own prefix, D(0)
    over the floor, the excess with its interval and permutation p, the EB-M-style ratio, the growth exponent and
    the feedback effect on the classifier's agreement. The variants named in ill_posed (inputs from another image
    than the target: the model can ignore its context) are measured, never read."""
    recs = []
    for variant, a in accs.items():
        full = str(a["ks"][-1])
        g = a.get("growth")
        band = (a.get("null_band_excess") or {}).get(full)
        rec = {"model": variant,
               "true prefix D(0)": _ci_text(a["distance"]["0"], a["ci_distance"]["0"], 4),
               "D(0) − floor": _ci_text(a["d0_minus_floor"], a.get("ci_d0_minus_floor"), 4),
               "own prefix D(k_max)": _ci_text(a["distance"][full], a["ci_distance"][full], 4),
               "excess D(k_max) − D(0) [95% CI]": _ci_text(a["excess"][full], a["ci_excess"][full], 4),
               "perm. p (null band)": (MISSING if "p_excess" not in a else
                                       f"{fmt(a['p_excess'][full], 3)} {_ci(band, 4)}"),
               "reading": ("not read (ill-posed arm)" if variant in ill_posed
                           else a.get("excess_reading", MISSING)),
               "EB-M-style D(k_max)/D(0)": (MISSING if a.get("ebm_ratio") is None else
                                        _ci_text(a["ebm_ratio"], a.get("ci_ebm_ratio"), 2)
                                        + ("" if a.get("ci_ebm_ratio") else " (unstable)")),
               "growth exponent β": MISSING if not g else _ci_text(g["beta"], g.get("ci_beta"), 2),
               "feedback effect (agreement)": (MISSING if "feedback_effect" not in a else
                                               _ci_text(a["feedback_effect"][full], a.get("ci_feedback_effect_full"),
                                                        3))}
        recs.append(rec)
    a0 = next(iter(accs.values()))
    st = a0["settings"]
    notes = [f"Region: positions {a0['region_positions']} ({st['region_rule']}); prefixes keep the true patches "
             f"before position r0 − k (r0 = {a0['r0']}) and generate the k positions before the region, k in "
             f"{a0['ks']} (k_max = {a0['ks'][-1]}: the full own prefix). D(k): {st['distance']}; kernel {st['kernel']} (bounded: D ≤ 2, so a model far from the "
             f"data at k = 0 has less room for an excess: read the excess beside D(0) − floor). {st['split']}: "
             f"{st['images_a']} and {st['images_b']} images; {st['pairing']}; {st['form']}; {st['fixed']}. "
             f"Floor: real A vs real B (what zero error reads). Perm. p: {st['null']}, {st['permutations']} swaps; "
             "the band is the 95% range of the excess under those swaps (what it reads when nothing accumulates). "
             "Reading: from the 95% interval alone ('clearly positive' where it excludes 0); the permutation p is "
             "one-sided and uncorrected, so it can fall below 0.05 while the interval still covers 0. "
             + (f"Not read: {', '.join(ill_posed)} (ill-posed: its inputs belong to another image than its target, "
                "so the model can ignore its context and an excess near 0 is built in). " if ill_posed else "") +
             "EB-M-style ratio: only where D(0)'s interval excludes 0, with an interval only where D(0) stays above 0 in "
             "every subset (else 'unstable'). Growth: excess(k) = c·E(k)^β by weighted least "
             "squares, E(k) the summed share of real images with ink over the k generated prefix positions, fitted "
             "only where the full-prefix excess is clearly positive. Feedback effect: agreement of the classifier "
             "with the label when the prefix positions are each generated from the true patches before them (not "
             "fed back), minus with the model's own full rollout. Intervals: 95% subsampling (half of A's and of "
             f"B's images, rows kept jointly across k), one run (seed {a0['model']['seed']}, EMA weights); not "
             "corrected for the other readings of this table."]
    return Table(f"accumulation_{name}", f"Error accumulation, ablation `{name}`", pd.DataFrame(recs), notes)
