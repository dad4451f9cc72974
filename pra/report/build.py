"""The report stage: JSON outputs of the pipeline -> reports/ (tables, figures, curves, metrics.json, README.md).

Everything here is rebuilt from the pipeline's own JSON files (not from MLflow), so the same results
give byte-identical tables.
"""
from __future__ import annotations

import json
from pathlib import Path

from pra.plan import ablation_runs, load_choices, path_of, runs, sweeps_guidance, tuned_variants, variant_run
from pra.config import ILL_POSED_METHODS, ExperimentConfig
from pra.config.sections import EMBEDDED_SOURCES
from pra.io import read_json, write_json, write_text
from pra.report import figures, published, tables


def curve_name(scale: str, method: str, variant: str, seed: int) -> str:
    return f"{scale}_{method}_{variant}_s{seed}.csv"


def training_log(run: Path) -> list[dict]:
    """The logged training metrics of a finished run."""
    return [json.loads(ln) for ln in (run / "train_log.jsonl").read_text().splitlines() if ln]


def write_curves(cfg: ExperimentConfig, results: Path, out: Path, extra: list = ()) -> list[Path]:
    """Training curves as CSV (step, loss terms, lr), one file per run (the planned runs, then `extra`, the tuned
    arms' measurement runs): what `dvc plots` reads."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in [*runs(cfg), *extra]:
        rows = training_log(path_of(results, r))
        p = out / curve_name(r.scale, r.method, r.variant, r.seed)
        write_text(p, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
        paths.append(p)
    return paths


def report_files(cfg: ExperimentConfig) -> dict[str, list[str]]:
    """Every file the report writes, relative to the reports folder (what the Snakemake rule declares)."""
    t = ["main", "runs", "scaling"] + (["probe"] if cfg.evaluate.probe else []) + \
        (["along_training"] if cfg.evaluate.snapshot_every else []) + \
        (["guidance"] if any(sweeps_guidance(cfg, r) for r in runs(cfg)) else []) + \
        [f"{k}_{a.name}" for a in cfg.ablations for k in ("ablation", "seeds", "tests")] + \
        [f"{k}_{a.name}" for a in cfg.ablations if a.diagnostics for k in ("gap", "accumulation", "approximation")]
    f = ["samples", "training_curves", "fid_vs_params"] + (["ablations_fid"] if cfg.ablations else []) + \
        (["along_training"] if cfg.evaluate.snapshot_every else []) + \
        (["guidance"] if any(sweeps_guidance(cfg, r) for r in runs(cfg)) else []) + \
        [f"{k}_{a.name}" for a in cfg.ablations if a.diagnostics
         for k in ("input_gap", "error_accumulation", "approximation")]
    grid = list(dict.fromkeys((r.scale, r.method, r.variant) for r in runs(cfg)))
    return {"tables": [f"tables/{n}.{ext}" for n in t for ext in ("md", "tex")],
            "figures": [f"figures/{n}.{ext}" for n in f for ext in ("png", "pdf")]
            + [f"figures/samples/{s}_{m}_{v}.png" for s, m, v in grid],
            "curves": [f"curves/{curve_name(r.scale, r.method, r.variant, r.seed)}" for r in runs(cfg)],
            "other": ["metrics.json", "README.md"] + [f"data/ablation_{a.name}.json" for a in cfg.ablations]
            + [f"data/diagnostics_{a.name}.json" for a in cfg.ablations if a.diagnostics]}


def measurement_runs(cfg: ExperimentConfig, results: Path) -> list:
    """The measurement runs of tuned ablation variants (known only after tuning, so not in plan.runs)."""
    known, out = set(runs(cfg)), []
    for a in cfg.ablations:
        if tuned_variants(a):
            out += [r for _, r in ablation_runs(a, load_choices(a, results)) if r not in known and r not in out]
    return out


def build_report(cfg: ExperimentConfig, results: Path, out: Path) -> list[Path]:
    from pra.data.dataset import PreparedSplit
    from pra.io import load_npz

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    ref = read_json(results / "reference" / "reference.json")
    floor = dict(ref["floor"])
    clf_path = results / "classifier" / "classifier.json"
    clf = read_json(clf_path) if not cfg.evaluate.inception_weights else {}  # the classifier's feature space
    if clf:
        floor["class_accuracy"] = clf["val_accuracy"]
    val = PreparedSplit(results / "data", "val")
    dataset = (f"embedded {cfg.data.source} {val.resolution}x{val.resolution}" if cfg.data.source in EMBEDDED_SOURCES
               else f"{Path(cfg.data.root).name} {val.resolution}x{val.resolution}")

    rows, probes, logs, along, guidance = [], {}, {}, {}, {}
    panels = [("real (val split)", val.all_images(), val.labels)]
    seen = set()
    for r in [*runs(cfg), *measurement_runs(cfg, results)]:  # every run, the tuned arms' measurement runs included
        d = path_of(results, r)
        ev = {**read_json(d / "eval.json"), "variant": r.variant}
        rows.append(ev)
        key = (r.scale, r.method, r.variant, r.seed)
        if cfg.evaluate.probe:
            probes[key] = read_json(d / "probe.json")
        logs[key] = training_log(d)
        if cfg.evaluate.snapshot_every:
            along[key] = read_json(d / "along_training.json")
        if sweeps_guidance(cfg, r):
            guidance[key] = read_json(d / "guidance.json")
        if (r.scale, r.method, r.variant) not in seen:  # first seed of each run: the sample grids
            seen.add((r.scale, r.method, r.variant))
            images, labels = load_npz(d / "samples.npz")
            name = tables.run_name(r.scale, r.method, r.variant)
            panels.append((name, images, labels))
            p = out / "figures" / "samples" / f"{r.scale}_{r.method}_{r.variant}.png"
            figures.sample_grid([panels[0], panels[-1]], val.num_classes, p, per_class=8, cols=2,
                                title=f"{name}, seed {r.seed}: 8 samples per class (EMA weights, sampling seed "
                                      f"{cfg.sample.seed}) beside real val images")
            written.append(p)

    built = [tables.main_table(rows, floor, ref["extractor"], ref["description"], dataset),
             tables.runs_table(rows, floor, probes, ref["extractor"], ref["description"],
                               cfg.evaluate.kid_subset_size, cfg.evaluate.prc_neighborhood,
                               clf.get("val_accuracy") if clf else None),
             tables.scaling_table(rows, dataset=dataset)]
    if cfg.evaluate.probe:
        built.append(tables.probe_table(probes, dataset=dataset))
    if along:
        built.append(tables.along_training_table(along))
    if guidance:
        built.append(tables.guidance_table(guidance))
    summaries = {a.name: read_json(results / "ablations" / f"{a.name}.json") for a in cfg.ablations}
    for s in summaries.values():
        built += [tables.ablation_table(s), tables.seeds_table(s), tables.tests_table(s)]
    diagnostics = {}
    for a in cfg.ablations:
        if not a.diagnostics:
            continue
        gaps, accs, approx = {}, {}, {}
        choices = load_choices(a, results)
        for v in a.variants:
            run = variant_run(a, v, choices, a.seeds[0])
            d = path_of(results, run)
            gaps[v.name] = read_json(d / "gap.json")
            accs[v.name] = (run.method, read_json(d / "accumulation.json"))
            approx[v.name] = read_json(d / "approximation.json")
        diagnostics[a.name] = (gaps, accs, approx)
        built += [tables.gap_table(a.name, gaps), tables.accumulation_table(a.name, {k: v for k, (_, v) in accs.items()},
                                             ill_posed=tuple(k for k, (m, _) in accs.items() if m in ILL_POSED_METHODS)),
                  tables.approximation_table(a.name, approx)]
    for t in built:
        written += t.write(out / "tables")

    written += figures.save_all(figures.sample_grid, panels, val.num_classes, out / "figures" / "samples.png",
                                per_class=4, title=f"class-conditional samples, EMA weights, sampling seed "
                                                   f"{cfg.sample.seed} (columns: classes 0-{val.num_classes - 1})")
    written += figures.save_all(figures.training_curves, logs, out / "figures" / "training_curves.png")
    if along:
        written += figures.save_all(figures.along_training, along, out / "figures" / "along_training.png")
    if guidance:
        written += figures.save_all(figures.guidance_sweep, guidance, out / "figures" / "guidance.png")
    written += figures.save_all(figures.fid_vs_params, published.IMAGENET256, rows, out / "figures" / "fid_vs_params.png",
                                dataset=dataset)
    for a in cfg.ablations:
        if not a.diagnostics:
            continue
        gaps, accs, approx = diagnostics[a.name]
        written += figures.save_all(figures.input_gap, gaps, out / "figures" / f"input_gap_{a.name}.png",
                                    title=f"input-distribution gap to each model's own rollout ({a.name}, "
                                          f"{a.scale}, seed {a.seeds[0]})")
        written += figures.save_all(figures.error_accumulation, accs,
                                    out / "figures" / f"error_accumulation_{a.name}.png",
                                    title=f"error accumulation ({a.name}, {a.scale}, seed {a.seeds[0]})")
        written += figures.save_all(figures.approximation, approx, out / "figures" / f"approximation_{a.name}.png",
                                    title=f"approximation error per position ({a.name}, {a.scale}, seed "
                                          f"{a.seeds[0]})")

    if summaries:
        written += figures.save_all(figures.ablation_fid, summaries, out / "figures" / "ablations_fid.png")

    write_json(out / "metrics.json", headline_metrics(rows, probes, floor, summaries,
                                                      scoring_record(cfg, dataset, clf)))
    written.append(out / "metrics.json")
    for name, s in summaries.items():  # every per-seed value of every endpoint and diagnostic, re-analysable
        write_json(out / "data" / f"ablation_{name}.json", s)
        written.append(out / "data" / f"ablation_{name}.json")
    for a in cfg.ablations:  # every run's diagnostic curves (all seeds), compact, re-analysable
        if a.diagnostics:
            write_json(out / "data" / f"diagnostics_{a.name}.json", diagnostic_runs(a, results))
            written.append(out / "data" / f"diagnostics_{a.name}.json")
    written += write_curves(cfg, results, out / "curves", measurement_runs(cfg, results))
    readme = out / "README.md"
    arms = {}
    for a in cfg.ablations:
        choices = load_choices(a, results)
        arms[a.name] = [(v.name, tables.run_name(r.scale, r.method, r.variant))
                        for v in a.variants for r in [variant_run(a, v, choices, a.seeds[0])]]
    write_text(readme, readme_text(cfg, built, summaries, ref, dataset, clf, arms))
    written.append(readme)
    return written


def diagnostic_runs(a, results: Path) -> dict:
    """Per variant and seed: the gap per position and over content positions (every construction, both spaces),
    the accumulation readings per k, the approximation ratios per position: what the figures show for one seed,
    for every seed."""
    choices = load_choices(a, results)
    out = {}
    for v in a.variants:
        for seed in a.seeds:
            run = variant_run(a, v, choices, seed)
            d = path_of(results, run)
            gap, acc, ap = (read_json(d / f) for f in ("gap.json", "accumulation.json", "approximation.json"))
            keep = ("mmd2", "gaussian_kl", "mean_mmd2", "ci_mmd2", "excess_mmd2", "ci_excess_mmd2", "minus_tf_mmd2",
                    "ci_minus_tf_mmd2", "ratio_to_tf_mmd2", "distance_to_true", "mean_distance_to_true")
            out[f"{v.name}/s{seed}"] = {
                "run": {"scale": run.scale, "method": run.method, "variant": run.variant, "seed": seed},
                "gap": {space: {"positions": r["positions"], "content_positions": r["content_positions"],
                                "sets": {k: {x: row[x] for x in keep if x in row} for k, row in r["sets"].items()}}
                        for space, r in gap["spaces"].items()},
                "accumulation": {k: acc[k] for k in ("ks", "exposure", "region_positions", "r0", "distance",
                                                     "ci_distance", "excess", "ci_excess", "p_excess",
                                                     "null_band_excess", "d0_minus_floor", "ebm_ratio", "growth",
                                                     "agreement", "agreement_control", "feedback_effect", "ci_feedback_effect",
                                                     "agreement_images", "summary")
                                 if k in acc},
                "approximation": ({k: ap[k] for k in ("positions", "content_positions", "anchored_to_true",
                                                      "constructions", "pra_minus_twin_content_ratio",
                                                      "ci_pra_minus_twin_content_ratio") if k in ap}
                                  if ap.get("applicable") else {"applicable": False})}
    return out


def scoring_record(cfg, dataset: str, clf: dict) -> dict:
    """What the metrics were measured on and with: the data and the feature network with its weights digest
    (`python -m pra check-rerun` refuses to compare files whose records differ)."""
    if cfg.evaluate.inception_weights:
        from pra.io import file_sha256

        path = Path(cfg.evaluate.inception_weights).expanduser()
        return {"data": dataset, "feature_network": "inception",
                "feature_sha256": file_sha256(path) if path.exists() else None}
    return {"data": dataset, "data_sha256": clf.get("data_sha256"), "feature_network": "classifier",
            "feature_sha256": clf.get("sha256")}


def headline_metrics(rows, probes, floor, summaries, scoring: dict | None = None) -> dict:
    """What `dvc metrics show` prints: per run, the real-data floor, and per ablation variant (means); and what
    they were scored on and with (scoring_record)."""
    metrics = {"scoring": scoring} if scoring else {}
    for r in rows:
        key = f"{r['scale']}/{r['method']}/{r['variant']}/s{r['seed']}"
        metrics[key] = {k: r[k] for k in ("fid", "is", "kid", "precision", "recall", "class_accuracy") if k in r}
        pk = (r["scale"], r["method"], r["variant"], r["seed"])
        if pk in probes:
            metrics[key]["probe_top1"] = probes[pk]["top1"]
    metrics["real_val_floor"] = {k: floor[k] for k in ("fid", "is", "precision", "recall", "class_accuracy")
                                 if k in floor}
    for name, s in summaries.items():
        metrics[f"ablation/{name}"] = {v["name"]: {k: m["mean"] for k, m in v["metrics"].items()
                                                   if k in ("fid", "precision", "recall", "probe_top1")}
                                       for v in s["variants"]}
        for v in s["variants"]:  # the seed-to-seed spread, what a rerun is checked against
            for k in ("fid", "class_accuracy"):
                m = v["metrics"].get(k)
                if m and m.get("std") is not None:
                    metrics[f"ablation/{name}"][v["name"]][f"{k}_sd"] = m["std"]
                    metrics[f"ablation/{name}"][v["name"]][f"{k}_seeds"] = m["n"]
    return metrics


def readme_text(cfg: ExperimentConfig, built: list, summaries: dict, ref: dict, dataset: str,
                clf: dict | None = None, arms: dict | None = None) -> str:
    """arms: ablation -> [(arm name, the run it names)], so that the arm names of the ablation tables and figures
    can be found in the run-named tables and figures (main, runs, probe, samples, training curves)."""
    lines = [f"# Report of experiment `{cfg.name}`", "",
             "Generated by the `build_report` rule (`python -m pra report`) from the pipeline's JSON outputs; do not "
             "edit by hand. Every number says where it comes from: rows marked *paper* are published numbers, every "
             "other number was measured by this pipeline on " + dataset + ".", ""]
    for a, s in summaries.items():
        if s.get("outcome"):
            lines += [f"## Outcome of ablation `{a}`, as measured", ""] + [f"- {o}" for o in s["outcome"]] + [""]
            if len(s.get("seeds", [])) == 1:
                paired = (s.get("analysis") or {}).get("analysis") == "paired"
                tests = ("the declared hypotheses get paired t-tests at the Bonferroni level ('equal' only from an "
                         "equivalence test within the declared margin) and every other comparison an estimate with "
                         "its interval" if paired else
                         "every comparison gets a Welch test, Holm-corrected over the ablation")
                lines += ["With one training seed per variant these are single measurements, not verdicts: no test "
                          f"is possible. The ablation's `seeds` list repeats them; with 2 or more seeds {tests} "
                          "(`python -m pra power` gives the seeds a comparison needs; `python -m pra block` runs a "
                          "registered study in blocks: docs/blocks.md).", ""]
    for a, pairs in (arms or {}).items():
        lines += [f"Arms of ablation `{a}` and the runs they name (the ablation's tables and figures use the arm "
                  "names; the main, runs and probe tables, the sample grids and the training curves name runs as "
                  "scale, method [overrides], seed): " + "; ".join(f"`{n}` = {r}" for n, r in pairs) + ".", ""]
    lines += ["## Tables", ""]
    context = {"main": "the paper's layout: published ImageNet rows beside this pipeline's measured rows",
               **{f"tests_{a}": "the registered tests (Welch with Holm, or paired t with TOST), effect sizes "
                                "with 95% intervals, and the declared hypotheses" for a in summaries},
               **{f"seeds_{a}": "FID, class agreement and accumulated error: mean over seeds with its 95% "
                                "t-interval, and every seed's value" for a in summaries},
               **{f"gap_{a}": "MMD² and Gaussian KL of every construction to the model's own rollout, in pixel inputs "
                              "and trunk states, beside the rollout-vs-rollout null, with intervals" for a in summaries},
               **{f"accumulation_{a}": "a fixed ink region after the true vs the model's own prefix: its excess "
                                       "distance to real regions with its swap-permutation p, the floor, the "
                                       "growth exponent and the feedback effect on the classifier's agreement, "
                                       "with intervals"
                  for a in summaries},
               **{f"approximation_{a}": "how far PRA's and its twin's inputs lie from the anchored sequential "
                                        "rollout's, on shared draws, with intervals" for a in summaries},
               "runs": "every trained run: FID, IS, KID, precision/recall, class agreement, probe",
               "scaling": "FID against model size, paper and measured",
               "probe": "linear probing (MAE-style, no augmentation), layer chosen on held-out train",
               "along_training": "proxy FID and class agreement per snapshot, EMA and raw weights, and the cost "
                                 "of one evaluation",
               "guidance": "the guidance sweep of every run: proxy FID per scale and the chosen scale"}
    for t in built:
        c = context.get(t.name, "variants with mean ± sd over seeds, and the measured outcome")
        lines.append(f"- [{t.title}](tables/{t.name}.md) ([LaTeX](tables/{t.name}.tex)): {c}.")
    lines += ["", "## Figures", ""]
    figs = [("samples", "class-conditional samples of every run beside real images "
                        "(one grid per run in [figures/samples/](figures/samples/))"),
            ("training_curves", "head loss and reconstruction loss during training"),
            ("fid_vs_params", "published ImageNet FIDs against parameters, by family; this pipeline's runs: FID "
                              "against parameters where several scales ran, else every run's FID")]
    if any(sweeps_guidance(cfg, r) for r in runs(cfg)):
        figs.append(("guidance", "proxy FID against the guidance scale of every run that sweeps it; the chosen "
                                 "scale (lowest proxy FID) is circled and the final sample is drawn at it"))
    if cfg.evaluate.snapshot_every:
        figs.append(("along_training", "proxy FID and class agreement of every snapshot along training, EMA "
                                       "(solid) and raw (dashed) weights; proxy samples are small, so the values "
                                       "are biased upward: read the trend"))
    if summaries:
        figs.append(("ablations_fid", "FID of every ablation variant: bar = mean, whisker = sd over seeds, dots = "
                                      "single seeds; each arm in its colour of the other figures (arms that share a method are tints "
                                      "of its colour), the reference variant outlined in black"))
    for a in cfg.ablations:
        if a.diagnostics:
            figs += [(f"input_gap_{a.name}", "MMD² between each training-input construction and the model's own "
                                             "rollout, per AR position, for each model in pixel inputs (upper "
                                             "panel) and trunk states (lower panel); grey: a second rollout (the "
                                             "null) and 95% of its permutation distribution"),
                     (f"error_accumulation_{a.name}", "a fixed ink region's excess distance to real regions after "
                                                      "k of the model's own prefix positions, against the "
                                                      "content-weighted exposure, with the fitted growth and the "
                                                      "swap-permutation null (grey bars); right: the feedback "
                                                      "effect per k (the classifier's agreement of the completed "
                                                      "images, no-feedback control minus own rollout) with 95% "
                                                      "intervals; arms that share a method are tints of its "
                                                      "colour"),
                     (f"approximation_{a.name}", "per-position distance of PRA's and its twin's inputs to the "
                                                 "anchored sequential rollout's (shared draws), in units of that "
                                                 "rollout's distance to the data; positions that are not content "
                                                 "positions are hatched, and the title says when all are")]
    for name, c in figs:
        lines += [f"### {name}", "", f"{c[0].upper() + c[1:]}. ([PDF](figures/{name}.pdf))", "",
                  f"![{name}](figures/{name}.png)", ""]
    lines += ["Training curves for `dvc plots`: [curves/](curves/). Headline numbers: [metrics.json](metrics.json)."
              + (" Every per-seed value of every endpoint and diagnostic of each ablation: "
                 + ", ".join(f"[data/ablation_{a.name}.json](data/ablation_{a.name}.json)" for a in cfg.ablations) + "."
                 if cfg.ablations else ""),
              f"Feature space of the sample metrics: {ref['extractor']}; reference: {ref['description']}."
              + classifier_identity(clf), ""]
    return "\n".join(lines)


def classifier_identity(clf: dict | None) -> str:
    """Which classifier the FIDs were measured with: its weights digest, where it was trained and on what CPU.
    FIDs measured by another classifier (trained on another CPU type, say) differ in level."""
    if not clf or not clf.get("sha256"):
        return ""
    where = clf.get("origin") or clf.get("source", "")
    cpu = (f" on {clf['cpu_model']}" + (f" ({clf['cpu_kernels']})" if clf.get("cpu_kernels") else "")
           if clf.get("cpu_model") else "")
    return (f" The classifier: weights sha256 {clf['sha256'][:16]}, {where}{cpu}. FIDs are comparable in level only "
            "with FIDs measured by the same classifier: one trained on another CPU type has other weights and moves "
            "them by several percent, and so can one trained on a CPU of the same model name whose family, model "
            "or vector capability differ (the project's docs/pipeline.md; `evaluate.classifier_dir` carries one).")


# ---- the command-line job ----------------------------------------------------------------------
def report_job(args):
    cfg = args.cfg
    outputs = build_report(cfg, Path(args.results), Path(args.out))
    print(json.dumps([str(p) for p in outputs]))
