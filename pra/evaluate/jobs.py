"""The evaluation jobs of the command line: the feature classifier, the reference statistics, the sample
metrics of one run and linear probing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def train_classifier(args):
    from pra.evaluate.classifier import train_classifier

    cfg = args.cfg
    info = train_classifier(args.data, args.out, epochs=cfg.evaluate.classifier_epochs,
                            seed=cfg.evaluate.classifier_seed, threads=args.threads)
    print(json.dumps(info))


def carry_classifier(args):
    from pra.evaluate.classifier import carry_classifier

    info = carry_classifier(args.source, args.data, args.out)
    print(json.dumps({k: info[k] for k in ("sha256", "source", "val_accuracy")}))


def _space(cfg, classifier):
    from pra.evaluate.metrics import feature_space

    return feature_space(cfg.evaluate.inception_weights, classifier, cfg.evaluate.inception_sha256_prefix)


def reference(args):
    """Reference statistics (or the user's reference batch, converted) and the real-data floor."""
    from pra.evaluate.reference import compute_reference, convert_adm_reference, floor_metrics
    from pra.io import write_json
    from pra.runtime import resolve_device, set_threads

    cfg = args.cfg
    set_threads(args.threads)
    e, space = cfg.evaluate, _space(cfg, args.classifier)
    device = resolve_device(cfg.device)
    if e.reference_stats:
        if not Path(e.reference_stats).exists():
            raise FileNotFoundError(f"evaluate.reference_stats: {e.reference_stats} does not exist (ADM's reference "
                                    "batches: https://github.com/openai/guided-diffusion/tree/main/evaluations)")
        info = convert_adm_reference(e.reference_stats, space, args.out, resolution=cfg.data.resolution,
                                     device=device)
    else:
        info = compute_reference(args.data, e.fid_reference, space, args.out, keep=e.reference_features,
                                 device=device)
    info["floor"] = floor_metrics(args.data, args.out, space, kid_subset_size=e.kid_subset_size,
                                  prc_neighborhood=e.prc_neighborhood, device=device)
    info["extractor"] = space.describe()
    info["code_hash"] = args.code_hash
    write_json(Path(args.out).with_suffix(".json"), info)
    print(json.dumps({"fid_val_floor": info["floor"]["fid"]}))


def evaluate(args):
    from pra import tracking
    from pra.evaluate.classifier import class_agreement
    from pra.evaluate.metrics import extract, load_reference, sample_metrics
    from pra.io import read_json, write_json
    from pra.runtime import resolve_device, set_threads
    from pra.io import load_npz

    cfg = args.cfg
    set_threads(args.threads)
    e = cfg.evaluate
    space = _space(cfg, args.classifier)
    images, labels = load_npz(args.samples)
    ref = load_reference(args.reference)
    feats = extract(images, space, device=resolve_device(cfg.device))
    out = sample_metrics(feats, space, ref, kid_subset_size=e.kid_subset_size, prc_neighborhood=e.prc_neighborhood)
    if args.classifier:
        agree = class_agreement(images, labels, args.classifier)
        out["class_accuracy"], out["class_accuracy_per_class"] = agree["accuracy"], agree["per_class"]
    meta = read_json(Path(args.samples).with_suffix(".json"))
    train_info = read_json(args.train_json)
    out.update(scale=meta["scale"], method=meta["method"], seed=meta["seed"], steps=meta["step"],
               params=train_info["params"], sampling=meta["sampling"], code_hash=args.code_hash,
               speed=meta.get("speed"))  # the sampling precision and CUDA graphs the shards (all equal) used
    write_json(args.out, out)
    run = tracking.Run(tracking.uri_of(args.tracking), cfg.name, "",
                       run_id=train_info.get("mlflow_run_id"))
    run.log_metrics({k: out[k] for k in ("fid", "is", "kid", "precision", "recall", "class_accuracy") if k in out},
                    meta["step"])
    if out["speed"]:
        run.set_tags({f"sample_{k}": v for k, v in out["speed"].items()})
    run.end("FINISHED")
    print(json.dumps({k: out[k] for k in ("fid", "is", "precision", "recall") if k in out}))


def sweep_guidance(args):
    """The guidance scale of one run, chosen on a proxy sample (sample.cfg_sweep)."""
    from pra import tracking
    from pra.evaluate.guidance import sweep
    from pra.io import write_json
    from pra.runtime import resolve_device, set_threads

    cfg = args.cfg
    set_threads(args.threads)
    out = sweep(args.model, cfg, reference=args.reference, classifier=args.classifier,
                device=resolve_device(cfg.device)) | {"code_hash": args.code_hash}
    write_json(args.out, out)
    run = tracking.Run(tracking.uri_of(args.tracking), cfg.name, "",
                       run_id=json.loads(Path(args.train_json).read_text()).get("mlflow_run_id"))
    run.set_tags({"cfg_scale_chosen": out["chosen"], "cfg_sweep": cfg.sample.cfg_sweep})
    for i, r in enumerate(out["rows"]):
        run.log_metrics({"sweep_fid": r["fid"], "sweep_cfg_scale": r["cfg_scale"]}, i)
    run.end("FINISHED")
    print(json.dumps({"chosen": out["chosen"], "fid": {r["cfg_scale"]: round(r["fid"], 3) for r in out["rows"]}}))


def evaluate_snapshots(args):
    """Evaluation along training: every snapshot of one run and its final model, EMA and raw weights."""
    from pra import tracking
    from pra.evaluate.along import along_training
    from pra.io import write_json
    from pra.runtime import resolve_device, set_threads

    cfg = args.cfg
    set_threads(args.threads)
    scale = float(json.loads(Path(args.guidance).read_text())["chosen"]) if args.guidance else None
    out = along_training(args.snapshots, args.model, cfg, reference=args.reference, classifier=args.classifier,
                         device=resolve_device(cfg.device), cfg_scale=scale) | {"code_hash": args.code_hash}
    write_json(args.out, out)
    run_id = json.loads(Path(args.train_json).read_text()).get("mlflow_run_id")
    run = tracking.Run(tracking.uri_of(args.tracking), cfg.name, "", run_id=run_id)
    for r in out["rows"]:
        w = r["weights"]
        run.log_metrics({f"along_{k}_{w}": r[k] for k in ("fid", "kid", "class_accuracy") if r.get(k) is not None},
                        r["step"])
    run.end("FINISHED")
    print(json.dumps([(r["step"], r["weights"], round(r["fid"], 3)) for r in out["rows"]]))


def probe(args):
    from pra import tracking
    from pra.data.dataset import PreparedSplit
    from pra.data.dataset import subsample
    from pra.evaluate.probe import probe_model
    from pra.io import write_json
    from pra.runtime import resolve_device, set_threads
    from pra.checkpoint import load_trained

    cfg = args.cfg
    set_threads(args.threads)
    e = cfg.evaluate
    device = resolve_device(cfg.device)
    net, _, meta = load_trained(args.model, device, use_ema=True)
    tr, va = PreparedSplit(args.data, "train"), PreparedSplit(args.data, "val")
    idx = subsample(len(tr), e.probe_max_train) if e.probe_max_train else np.arange(len(tr))
    res = probe_model(net, tr, idx, va, tr.num_classes, holdout_fraction=e.probe_holdout_fraction,
                      epochs=e.probe_epochs, warmup_epochs=e.probe_warmup_epochs, batch_size=e.probe_batch_size,
                      base_lr=e.probe_base_lr, select_max=e.probe_select_max, device=device)
    res.update({k: meta[k] for k in ("scale", "method", "seed", "step")}, code_hash=args.code_hash)
    write_json(args.out, res)
    run = tracking.Run(tracking.uri_of(args.tracking), cfg.name, "",
                       run_id=meta.get("mlflow_run_id"))
    run.log_metrics({"probe_top1": res["top1"], "probe_top5": res["top5"], "probe_layer": res["layer"]}, meta["step"])
    run.end("FINISHED")
    print(json.dumps({k: res[k] for k in ("layer", "top1", "top5")}))
