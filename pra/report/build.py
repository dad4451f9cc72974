"""The report stage: JSON outputs of the pipeline -> reports/ tables, figures and metrics.json."""
from __future__ import annotations

from pathlib import Path

from pra.config import ExperimentConfig
from pra.io import read_json, write_json
from pra.report import figures, tables


def run_dir(results: Path, scale: str, method: str, seed: int) -> Path:
    return results / "runs" / scale / method / f"s{seed}"


def build_report(cfg: ExperimentConfig, results: Path, out: Path) -> list[Path]:
    from pra.data.dataset import PreparedSplit
    from pra.sample import load_npz

    rows, panels, probes = [], [], {}
    ref = read_json(results / "reference" / "reference.json")
    floor = dict(ref["floor"])
    clf_path = results / "classifier" / "classifier.json"
    clf = read_json(clf_path) if clf_path.exists() else {}
    if clf:
        floor["class_accuracy"] = clf["val_accuracy"]
    val = PreparedSplit(results / "data", "val")
    panels.append(("real (val)", val.all_images(), val.labels))
    for scale in cfg.scales:
        for method in cfg.methods:
            for seed in cfg.seeds:
                d = run_dir(results, scale, method, seed)
                ev = read_json(d / "eval.json")
                rows.append(ev)
                if (d / "probe.json").exists() and cfg.evaluate.probe:
                    probes[(scale, method, seed)] = read_json(d / "probe.json")
                if seed == cfg.seeds[0]:
                    images, labels = load_npz(d / "samples.npz")
                    panels.append((f"{scale} {method}", images, labels))
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    fid_md = out / "tables" / "fid.md"
    header = (f"# Sample quality per (scale, method): experiment `{cfg.name}`\n\n"
              f"All rows measured by this pipeline with torch-fidelity. Features: {ref['extractor']}. "
              f"Reference: {ref['description']}. FID in float64; IS over 10 splits; KID with subsets of "
              f"{cfg.evaluate.kid_subset_size} (capped at the sample count); precision/recall with "
              f"k={cfg.evaluate.prc_neighborhood}. "
              + ("Class acc.: fraction of samples the same classifier assigns to the class they were conditioned "
                 f"on (the classifier's own val accuracy: {clf['val_accuracy']:.3f}). " if clf else "")
              + "Probe: MAE linear-probe top-1 on the val split, layer chosen on a held-out slice of train. "
              "The last row is the floor: the real val split scored exactly like a sample.\n\n")
    fid_md.write_text(header + tables.fid_table(rows, floor, probes))
    grid = out / "figures" / "samples.png"
    figures.sample_grid(panels, val.num_classes, grid, per_class=4,
                        title=f"class-conditional samples, EMA weights, seed {cfg.sample.seed} "
                              f"(columns: classes 0-{val.num_classes - 1})")
    curves = write_curves(cfg, results, out / "curves")
    metrics = {}
    for r in rows:
        key = f"{r['scale']}/{r['method']}/s{r['seed']}"
        metrics[key] = {k: r[k] for k in ("fid", "is", "kid", "precision", "recall", "class_accuracy") if k in r}
        if (r["scale"], r["method"], r["seed"]) in probes:
            metrics[key]["probe_top1"] = probes[(r["scale"], r["method"], r["seed"])]["top1"]
    metrics["real_val_floor"] = {k: floor[k] for k in ("fid", "is", "precision", "recall", "class_accuracy")
                                 if k in floor}
    write_json(out / "metrics.json", metrics)
    return [fid_md, grid, out / "metrics.json", *curves]


def curve_name(scale: str, method: str, seed: int) -> str:
    return f"{scale}_{method}_s{seed}.csv"


def write_curves(cfg: ExperimentConfig, results: Path, out: Path) -> list[Path]:
    """Training curves as CSV (step, loss terms, lr), one file per run: what `dvc plots` reads."""
    import json

    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for scale in cfg.scales:
        for method in cfg.methods:
            for seed in cfg.seeds:
                log = run_dir(results, scale, method, seed) / "train_log.jsonl"
                rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln]
                p = out / curve_name(scale, method, seed)
                pd.DataFrame(rows).to_csv(p, index=False, float_format="%.6g")
                paths.append(p)
    return paths
