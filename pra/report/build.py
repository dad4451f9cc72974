"""The report stage: JSON outputs of the pipeline -> reports/ tables, figures, curves and metrics.json."""
from __future__ import annotations

import json
from pathlib import Path

from pra.ablate.summary import run_dir
from pra.config import ExperimentConfig
from pra.io import read_json, write_json
from pra.report import figures, tables


def curve_name(scale: str, method: str, variant: str, seed: int) -> str:
    return f"{scale}_{method}_{variant}_s{seed}.csv"


def write_curves(cfg: ExperimentConfig, results: Path, out: Path) -> list[Path]:
    """Training curves as CSV (step, loss terms, lr), one file per run: what `dvc plots` reads."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in cfg.runs():
        log = run_dir(results, r.scale, r.method, r.variant, r.seed) / "train_log.jsonl"
        rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln]
        p = out / curve_name(r.scale, r.method, r.variant, r.seed)
        pd.DataFrame(rows).to_csv(p, index=False, float_format="%.6g")
        paths.append(p)
    return paths


def build_report(cfg: ExperimentConfig, results: Path, out: Path) -> list[Path]:
    from pra.data.dataset import PreparedSplit
    from pra.sample import load_npz

    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    written: list[Path] = []

    rows, panels, probes, logs = [], [], {}, {}
    ref = read_json(results / "reference" / "reference.json")
    floor = dict(ref["floor"])
    clf_path = results / "classifier" / "classifier.json"
    clf = read_json(clf_path) if clf_path.exists() else {}
    if clf:
        floor["class_accuracy"] = clf["val_accuracy"]
    val = PreparedSplit(results / "data", "val")
    panels.append(("real (val split)", val.all_images(), val.labels))
    first_seed = {}
    for r in cfg.runs():
        d = run_dir(results, r.scale, r.method, r.variant, r.seed)
        ev = read_json(d / "eval.json")
        ev["variant"] = r.variant
        rows.append(ev)
        key = (r.scale, r.method, r.variant, r.seed)
        if cfg.evaluate.probe and (d / "probe.json").exists():
            probes[key] = read_json(d / "probe.json")
        logs[key] = [json.loads(ln) for ln in (d / "train_log.jsonl").read_text().splitlines() if ln]
        if (r.scale, r.method, r.variant) not in first_seed:
            first_seed[(r.scale, r.method, r.variant)] = r.seed
            images, labels = load_npz(d / "samples.npz")
            name = f"{r.scale} {r.method}" + ("" if r.variant == "base" else f" [{r.variant}]")
            panels.append((name, images, labels))

    header = (f"# Sample quality per run: experiment `{cfg.name}`\n\n"
              f"All rows measured by this pipeline with torch-fidelity. Features: {ref['extractor']}. "
              f"Reference: {ref['description']}. FID in float64; IS over 10 splits; KID with subsets of "
              f"{cfg.evaluate.kid_subset_size} (capped at the sample count); precision/recall with "
              f"k={cfg.evaluate.prc_neighborhood}. "
              + ("Class acc.: fraction of samples the same classifier assigns to the class they were conditioned "
                 f"on (the classifier's own val accuracy: {clf['val_accuracy']:.3f}). " if clf else "")
              + "Probe: MAE linear-probe top-1 on the val split, layer chosen on a held-out slice of train. "
              "The last row is the floor: the real val split scored exactly like a sample.\n\n")
    p = out / "tables" / "fid.md"
    p.write_text(header + tables.fid_table(rows, floor, probes))
    written.append(p)

    grid = out / "figures" / "samples.png"
    figures.sample_grid(panels, val.num_classes, grid, per_class=4,
                        title=f"class-conditional samples, EMA weights, seed {cfg.sample.seed} "
                              f"(columns: classes 0-{val.num_classes - 1})")
    written.append(grid)
    p = out / "figures" / "training_curves.png"
    figures.training_curves(logs, p)
    written.append(p)

    metrics = {}
    for r in rows:
        key = f"{r['scale']}/{r['method']}/{r['variant']}/s{r['seed']}"
        metrics[key] = {k: r[k] for k in ("fid", "is", "kid", "precision", "recall", "class_accuracy") if k in r}
        pk = (r["scale"], r["method"], r["variant"], r["seed"])
        if pk in probes:
            metrics[key]["probe_top1"] = probes[pk]["top1"]
    metrics["real_val_floor"] = {k: floor[k] for k in ("fid", "is", "precision", "recall", "class_accuracy")
                                 if k in floor}

    for a in cfg.ablations:
        summary = read_json(results / "ablations" / f"{a.name}.json")
        p = out / "tables" / f"ablation_{a.name}.md"
        p.write_text(tables.ablation_table(summary))
        written.append(p)
        metrics[f"ablation/{a.name}"] = {v["name"]: {k: m["mean"] for k, m in v["metrics"].items()
                                                     if k in ("fid", "precision", "recall", "probe_top1")}
                                         for v in summary["variants"]}
        if a.diagnostics:
            gaps, accs = {}, {}
            for v in a.variants:
                method = v.method or a.method
                from pra.config import variant_id

                d = run_dir(results, a.scale, method, variant_id(v.overrides), a.seeds[0])
                gaps[v.name] = read_json(d / "gap.json")
                accs[v.name] = (method, read_json(d / "accumulation.json"))
            p = out / "figures" / f"input_gap_{a.name}.png"
            figures.input_gap(gaps, p, title=f"input-distribution gap to each model's own rollout "
                                             f"({a.name}, {a.scale}, seed {a.seeds[0]})")
            written.append(p)
            p = out / "figures" / f"error_accumulation_{a.name}.png"
            figures.error_accumulation(accs, p, title=f"error accumulation ({a.name}, {a.scale}, seed {a.seeds[0]})")
            written.append(p)
    write_json(out / "metrics.json", metrics)
    written.append(out / "metrics.json")
    written += write_curves(cfg, results, out / "curves")
    return written
