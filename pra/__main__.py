"""`python -m pra <command>`: the one entry point every Snakemake rule calls."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _config(args):
    from pra import config as C

    if getattr(args, "config_json", None):  # a rule's subset of a config validated whole by the Snakefile
        return C.from_dict(json.loads(args.config_json), cross_checks=False)
    if getattr(args, "config", None):
        return C.load(*args.config)
    return C.ExperimentConfig()


def _add_config(p):
    p.add_argument("--config", nargs="+", metavar="YAML", help="experiment YAML file(s), later ones override")
    p.add_argument("--config-json", help="the experiment config as JSON (what the Snakemake rules pass)")


def cmd_export(args):
    from pra.data.embedded import export

    cfg = _config(args)
    counts = export(cfg.data.source, args.out, cfg.data.val_fraction, cfg.data.split_seed)
    print(json.dumps(counts))


def cmd_prepare(args):
    from pra.data.prepare import prepare

    cfg = _config(args)
    d = cfg.data
    workers = d.workers or args.threads
    m = prepare(args.root or d.root, args.out, resolution=d.resolution, channels=d.channels,
                shard_size=d.shard_size, workers=workers, on_bad_image=d.on_bad_image,
                val_labels=d.val_labels or None)
    print(json.dumps({s: v["count"] for s, v in m["splits"].items()}))


def cmd_init_tracking(args):
    from pra import tracking

    uri = args.uri or tracking.default_uri(args.results)
    exp_id = tracking.init_store(uri, args.experiment)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from pra.io import write_json

    write_json(args.out, {"tracking_uri": uri, "experiment": args.experiment, "experiment_id": exp_id})


def cmd_train_classifier(args):
    from pra.evaluate.classifier import train_classifier

    cfg = _config(args)
    info = train_classifier(args.data, args.out, epochs=cfg.evaluate.classifier_epochs,
                            seed=cfg.evaluate.classifier_seed, threads=args.threads)
    print(json.dumps(info))


def _space(cfg, classifier):
    from pra.evaluate.metrics import feature_space

    return feature_space(cfg.evaluate.inception_weights, classifier)


def cmd_reference(args):
    """Reference statistics (or the user's reference file) and the real-data floor."""
    import shutil

    from pra.evaluate.reference import compute_reference, floor_metrics
    from pra.io import write_json
    from pra.runtime import resolve_device, set_threads

    cfg = _config(args)
    set_threads(args.threads)
    e, space = cfg.evaluate, _space(cfg, args.classifier)
    device = resolve_device(cfg.device)
    if e.reference_stats:
        if not Path(e.reference_stats).exists():
            raise FileNotFoundError(f"evaluate.reference_stats: {e.reference_stats} does not exist (ADM's reference "
                                    "batches: https://github.com/openai/guided-diffusion/tree/main/evaluations)")
        from pra.io import atomic_path

        with atomic_path(args.out) as tmp:
            shutil.copyfile(e.reference_stats, tmp)
        info = {"description": f"{Path(e.reference_stats).name} (user-provided reference statistics)"}
    else:
        info = compute_reference(args.data, e.fid_reference, space, args.out, keep=e.reference_features,
                                 device=device)
    info["floor"] = floor_metrics(args.data, args.out, space, kid_subset_size=e.kid_subset_size,
                                  prc_neighborhood=e.prc_neighborhood, device=device)
    info["extractor"] = space.describe()
    write_json(Path(args.out).with_suffix(".json"), info)
    print(json.dumps({"fid_val_floor": info["floor"]["fid"]}))


def cmd_train(args):
    from pra.train import train

    cfg = _config(args)
    uri = None
    if args.tracking:
        from pra.io import read_json

        uri = read_json(args.tracking)["tracking_uri"]
    summary = train(cfg, scale=args.scale, method=args.method, seed=args.seed, data_dir=args.data,
                    out_dir=args.out, tracking_uri=uri, progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("scale", "method", "seed", "steps", "params", "seconds")}))


def cmd_sample(args):
    from pra.sample import sample_to_npz

    cfg = _config(args)
    info = sample_to_npz(args.model, args.out, cfg.sample, device=cfg.device, threads=args.threads,
                         shard=args.shard, num_shards=args.num_shards)
    print(json.dumps({k: info[k] for k in ("count", "seconds")}))


def cmd_gather(args):
    from pra.sample import gather

    info = gather(args.shards, args.out, png_dir=args.png_dir)
    print(json.dumps({"count": info["count"]}))


def cmd_evaluate(args):
    from pra import tracking
    from pra.evaluate.classifier import class_agreement
    from pra.evaluate.metrics import extract, load_reference, sample_metrics
    from pra.io import read_json, write_json
    from pra.runtime import resolve_device, set_threads
    from pra.sample import load_npz

    cfg = _config(args)
    set_threads(args.threads)
    e = cfg.evaluate
    space = _space(cfg, args.classifier)
    images, labels = load_npz(args.samples)
    ref = load_reference(args.reference, space)
    feats = extract(images, space, device=resolve_device(cfg.device))
    out = sample_metrics(feats, space, ref, kid_subset_size=e.kid_subset_size, prc_neighborhood=e.prc_neighborhood)
    if args.classifier:
        agree = class_agreement(images, labels, args.classifier)
        out["class_accuracy"], out["class_accuracy_per_class"] = agree["accuracy"], agree["per_class"]
    meta = read_json(Path(args.samples).with_suffix(".json"))
    train_info = read_json(args.train_json)
    out.update(scale=meta["scale"], method=meta["method"], seed=meta["seed"], steps=meta["step"],
               params=train_info["params"], sampling=meta["sampling"])
    write_json(args.out, out)
    run = tracking.Run(read_json(args.tracking)["tracking_uri"] if args.tracking else None, cfg.name, "",
                       run_id=train_info.get("mlflow_run_id"))
    run.log_metrics({k: out[k] for k in ("fid", "is", "kid", "precision", "recall", "class_accuracy") if k in out},
                    meta["step"])
    run.end("FINISHED")
    print(json.dumps({k: out[k] for k in ("fid", "is", "precision", "recall") if k in out}))


def cmd_probe(args):
    from pra import tracking
    from pra.data.dataset import PreparedSplit
    from pra.evaluate.metrics import subsample
    from pra.evaluate.probe import probe_model
    from pra.io import read_json, write_json
    from pra.runtime import resolve_device, set_threads
    from pra.checkpoint import load_trained

    cfg = _config(args)
    set_threads(args.threads)
    e = cfg.evaluate
    device = resolve_device(cfg.device)
    net, _, meta = load_trained(args.model, device, use_ema=True)
    tr, va = PreparedSplit(args.data, "train"), PreparedSplit(args.data, "val")
    idx = subsample(len(tr), e.probe_max_train) if e.probe_max_train else np.arange(len(tr))
    res = probe_model(net, tr.take(idx), tr.labels[idx], va.all_images(), va.labels, tr.num_classes,
                      holdout_fraction=e.probe_holdout_fraction, epochs=e.probe_epochs,
                      warmup_epochs=e.probe_warmup_epochs, batch_size=e.probe_batch_size, base_lr=e.probe_base_lr,
                      device=device)
    res.update({k: meta[k] for k in ("scale", "method", "seed", "step")})
    write_json(args.out, res)
    run = tracking.Run(read_json(args.tracking)["tracking_uri"] if args.tracking else None, cfg.name, "",
                       run_id=meta.get("mlflow_run_id"))
    run.log_metrics({"probe_top1": res["top1"], "probe_top5": res["top5"], "probe_layer": res["layer"]}, meta["step"])
    run.end("FINISHED")
    print(json.dumps({k: res[k] for k in ("layer", "top1", "top5")}))


def _diagnostic_setup(args):
    """Config, EMA model, held-out (val) images and a fixed subset of train images (PCA bases) for the
    gap/accumulation diagnostics."""
    from pra.data.dataset import PreparedSplit
    from pra.evaluate.metrics import subsample
    from pra.runtime import resolve_device, set_threads
    from pra.checkpoint import load_trained

    cfg = _config(args)
    set_threads(args.threads)
    net, _, meta = load_trained(args.model, resolve_device(cfg.device), use_ema=True)
    val, tr = PreparedSplit(args.data, "val"), PreparedSplit(args.data, "train")
    iv = subsample(len(val), args.images, seed=0)
    it = subsample(len(tr), args.basis_images, seed=0)
    model = {k: meta[k] for k in ("scale", "method", "seed", "step")} | {"weights": "EMA"}
    return cfg, net, model, (val.take(iv), val.labels[iv]), (tr.take(it), tr.labels[it])


def cmd_gap(args):
    from pra.diagnostics.gap import input_gap
    from pra.io import write_json

    cfg, net, model, (vx, vy), (tx, ty) = _diagnostic_setup(args)
    res = input_gap(net, cfg, vx, vy, tx, ty, permutations=args.permutations, subsamples=args.subsamples) | {"model": model}
    write_json(args.out, res)
    print(json.dumps({f"{space}/{k}": round(v.get("excess_mmd2", v["mean_mmd2"]), 5)
                      for space, r in res["spaces"].items() for k, v in r["sets"].items()}))


def cmd_accumulate(args):
    from pra.diagnostics.accumulation import error_accumulation
    from pra.io import write_json

    cfg, net, model, (vx, vy), (tx, _) = _diagnostic_setup(args)
    res = error_accumulation(net, cfg, vx, vy, tx, subsamples=args.subsamples) | {"model": model}
    write_json(args.out, res)
    print(json.dumps({k: round(res[f"mean_{k}"], 4) for k in ("own_prefix", "true_prefix", "floor", "accumulated")}))


def cmd_ablation(args):
    from pra.ablation import log_to_mlflow, summarize
    from pra.io import read_json, write_json

    cfg = _config(args)
    ab = {a.name: a for a in cfg.ablations}[args.name]
    summary = summarize(cfg, ab, Path(args.results))
    uri = read_json(args.tracking)["tracking_uri"] if args.tracking else None
    summary["mlflow_parent_run_id"] = log_to_mlflow(summary, uri, cfg.name)
    write_json(args.out, summary)
    print("\n".join(summary["outcome"]))


def cmd_tune(args):
    from pra.ablation import tuning_scores
    from pra.io import write_json
    from pra.plan import choose

    cfg = _config(args)
    ab = {a.name: a for a in cfg.ablations}[args.name]
    choices = choose(ab, tuning_scores(ab, Path(args.results)))
    write_json(args.out, choices)
    print(json.dumps({k: v["value"] for k, v in choices.items()}))


def cmd_check_rerun(args):
    from pra.io import read_json
    from pra.reproduction import check, pooled_sd

    sd, n = pooled_sd(read_json(args.spread), args.metric)
    rows = check(read_json(args.committed), read_json(args.rerun), sd, metric=args.metric, k=args.k)
    if not rows:
        sys.exit(f"no run with '{args.metric}' in both {args.committed} and {args.rerun}")
    print(f"{args.metric}: tolerance {args.k:g} x pooled seed sd {sd:.3f} (from {n} variants of {args.spread})")
    for r in rows:
        print(f"  {r['run']}: committed {r['committed']:.3f}, rerun {r['rerun']:.3f}, difference "
              f"{r['difference']:+.3f} -> {'within' if r['within'] else 'OUTSIDE'} the spread")
    sys.exit(0 if all(r["within"] for r in rows) else 1)


def cmd_report(args):
    from pra.report.build import build_report

    cfg = _config(args)
    outputs = build_report(cfg, Path(args.results), Path(args.out))
    print(json.dumps([str(p) for p in outputs]))


def cmd_params(args):
    from pra.model.network import Geometry, PRANetwork, count_parameters
    from pra.model.scales import get_scale

    cfg = _config(args)
    geom = Geometry(cfg.data.resolution, cfg.data.channels, cfg.model.patch_size, args.num_classes)
    import torch

    out = {}
    for s in cfg.scales:
        with torch.device("meta"):
            net = PRANetwork(get_scale(s), cfg.model, geom, "pra")
        out[s] = count_parameters(net)
    print(json.dumps(out))


def cmd_bench(args):
    from pra.bench import run_bench

    cfg = _config(args)
    run_bench(cfg, args.out, threads=args.threads, reps=args.reps, scales=tuple(args.scales),
              sample_scales=tuple(args.sample_scales), sample_ode_steps=args.sample_ode_steps)
    print((Path(args.out) / "results.md").read_text())


def cmd_bench_prepare(args):
    from pra.bench import bench_prepare

    bench_prepare(args.out, n=args.images, resolution=args.resolution, workers=args.workers)
    print((Path(args.out) / "prepare.md").read_text())


def cmd_estimate(args):
    from pra.estimate import estimate

    cfg = _config(args)
    n = args.num_classes or (1000 if cfg.data.source == "imagefolder" else 10)
    r = estimate(cfg, n, peak_tflops=args.peak_tflops, mfu=args.mfu)
    print(json.dumps(r, indent=2))
    for s, v in r["scales"].items():
        for m, e in v["methods"].items():
            where = f"{v['train_nodes']} nodes x {max(1, v['train_gpus'])}" if v["train_nodes"] > 1 else \
                f"{v['gpus_per_job']}"
            print(f"{s:6s} {m:14s} {v['params'] / 1e6:7.1f}M params  {e['flops_per_image'] / 1e9:8.1f} GFLOP/image/step  "
                  f"{e['gpu_hours']:9.0f} GPU-hours  = {e['wall_hours']:7.1f} h on {where} GPUs", file=sys.stderr)


def cmd_scales(args):
    from dataclasses import asdict

    from pra.model.scales import SCALES

    print(json.dumps({k: asdict(v) for k, v in SCALES.items()}, indent=2))


def cmd_launch(args):
    from pra.launch import LaunchError, launch

    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    if not rest:
        raise SystemExit("python -m pra launch: give what every process runs after --, e.g. -- -m pra train ...")
    try:
        launch(args.nodes, args.procs_per_node, rest)
    except LaunchError as e:
        raise SystemExit(f"launch error: {e}") from None


def cmd_schema(args):
    from pra.config import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


def cmd_config(args):
    from pra.config import reconstructions

    cfg = _config(args)
    if args.reconstructions:
        for r in reconstructions(cfg):
            print(f"{r['key']:32s} {json.dumps(r['value']):>14s}  {r['help']}")
    else:
        print(json.dumps(cfg.to_dict(), indent=2))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["torchrun"]:  # torchrun whose agent survives Slurm's USR1 warning (pra/agent.py)
        from pra.agent import run

        run(argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m pra", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name, fn, help):
        p = sub.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    p = add("export", cmd_export, "export the embedded dataset of data.source (digits, mnist) as an image folder")
    _add_config(p)
    p.add_argument("--out", required=True)

    p = add("prepare", cmd_prepare, "raw image folder -> center-cropped uint8 shards")
    _add_config(p)
    p.add_argument("--root", help="raw image folder (default: data.root)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)

    p = add("init-tracking", cmd_init_tracking, "create the MLflow store and experiment once")
    p.add_argument("--results", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--uri", help="tracking URI (default: MLFLOW_TRACKING_URI or <results>/mlflow.db)")
    p.add_argument("--out", required=True)

    p = add("train-classifier", cmd_train_classifier, "train the evaluation feature classifier")
    _add_config(p)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)

    p = add("reference", cmd_reference, "reference statistics of real images and the real-data floor")
    _add_config(p)
    p.add_argument("--data", required=True)
    p.add_argument("--classifier", help="classifier.pt (feature space of the embedded default)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)

    p = add("train", cmd_train, "train one (scale, method, seed)")
    _add_config(p)
    p.add_argument("--scale", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tracking", help="tracking.json written by init-tracking")
    p.add_argument("--quiet", action="store_true")

    p = add("sample", cmd_sample, "class-balanced seeded samples -> npz")
    _add_config(p)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)

    p = add("gather", cmd_gather, "sample shards -> one npz in label order")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--png-dir")

    p = add("evaluate", cmd_evaluate, "FID/IS/KID/precision/recall (+ class agreement) of a sample npz")
    _add_config(p)
    p.add_argument("--samples", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--classifier")
    p.add_argument("--train-json", required=True)
    p.add_argument("--tracking")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)

    p = add("probe", cmd_probe, "linear probing of a trained model (MAE recipe + fast probe)")
    _add_config(p)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--tracking")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)

    for name, fn, help in (("gap", cmd_gap, "input-distribution gap of a trained model"),
                           ("accumulate", cmd_accumulate, "error accumulation along the sequence")):
        p = add(name, fn, help)
        _add_config(p)
        p.add_argument("--model", required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--images", type=int, default=1000, help="held-out (val) images compared (at most)")
        p.add_argument("--basis-images", type=int, default=500, help="train images the fixed PCA bases are fitted on")
        p.add_argument("--subsamples", type=int, default=100, help="subsets (half size, without replacement) per interval")
        p.add_argument("--threads", type=int, default=1)
        if name == "gap":
            p.add_argument("--permutations", type=int, default=200, help="permutations of the MMD tests")

    p = add("ablation", cmd_ablation, "aggregate one ablation over variants and seeds; MLflow parent + children")
    _add_config(p)
    p.add_argument("--name", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--tracking")
    p.add_argument("--out", required=True)

    p = add("tune", cmd_tune, "choose each tuned variant's noise-knob value from its runs on the tuning seed")
    _add_config(p)
    p.add_argument("--name", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)

    p = add("check-rerun", cmd_check_rerun, "does a rerun's metrics.json agree with a committed one within the "
                                           "seed-to-seed spread?")
    p.add_argument("committed")
    p.add_argument("rerun")
    p.add_argument("--spread", required=True, help="a metrics.json with '<metric>_sd' entries (an ablation "
                                                  "with several seeds, e.g. reports/settle/metrics.json)")
    p.add_argument("--metric", default="fid")
    p.add_argument("--k", type=float, default=3.0, help="tolerance in pooled seed sds")

    p = add("report", cmd_report, "tables and figures from the pipeline's JSON")
    _add_config(p)
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)

    p = add("params", cmd_params, "parameter counts of the experiment's scales as JSON")
    _add_config(p)
    p.add_argument("--experiment", dest="config", nargs="+", help="alias of --config")
    p.add_argument("--num-classes", type=int, default=None)

    p = add("bench", cmd_bench, "speed/memory ratios measured side by side -> benchmarks/results.{json,md}")
    _add_config(p)
    p.add_argument("--out", default="benchmarks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--scales", nargs="+", default=["tiny-S", "tiny-L"], help="training-step scales")
    p.add_argument("--sample-scales", nargs="+", default=["tiny-S", "PRA-S"], help="sampling scales (256 tokens)")
    p.add_argument("--sample-ode-steps", type=int, default=16)

    p = add("bench-prepare", cmd_bench_prepare, "preprocessing vs bare PIL -> benchmarks/prepare.{json,md}")
    p.add_argument("--out", default="benchmarks")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)

    p = add("estimate", cmd_estimate, "training FLOPs and GPU-hours of an experiment's scales (estimate)")
    _add_config(p)
    p.add_argument("--experiment", dest="config", nargs="+", help="alias of --config")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--peak-tflops", type=float, default=312.0)
    p.add_argument("--mfu", type=float, default=0.4)

    add("scales", cmd_scales, "the scale registry")

    p = add("launch", cmd_launch, "multi-node training inside a Slurm allocation: srun + one torchrun per node")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--procs-per-node", type=int, default=1, help="processes per node (its GPUs; 1 on CPU nodes)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- <what torchrun runs on every process, e.g. -m pra train ...>")

    p = add("schema", cmd_schema, "print the config JSON schema")
    p.add_argument("--out")

    p = add("config", cmd_config, "print the resolved config")
    _add_config(p)
    p.add_argument("--reconstructions", action="store_true", help="list the values not published by the paper")

    args = ap.parse_args(argv)
    if args.command == "params" and args.num_classes is None:
        args.num_classes = 1000 if _config(args).data.source == "imagefolder" else 10
    from pra.config import ConfigError
    from pra.train import Stop

    try:
        args.fn(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except Stop as e:  # preempted: the state is saved, a rerun (Slurm retry) resumes
        print(f"stopped early: {e}", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
