"""The diagnostic jobs of the command line: the input gap and error accumulation of one trained model."""
from __future__ import annotations

import json


def _setup(args):
    """Config, EMA model, held-out (val) images and a fixed subset of train images (PCA bases) for the
    gap/accumulation diagnostics."""
    from pra.data.dataset import PreparedSplit
    from pra.data.dataset import subsample
    from pra.runtime import resolve_device, set_threads
    from pra.checkpoint import load_trained

    cfg = args.cfg
    set_threads(args.threads)
    net, _, meta = load_trained(args.model, resolve_device(cfg.device), use_ema=True)
    val, tr = PreparedSplit(args.data, "val"), PreparedSplit(args.data, "train")
    iv = subsample(len(val), args.images, seed=0)
    it = subsample(len(tr), args.basis_images, seed=0)
    model = {k: meta[k] for k in ("scale", "method", "seed", "step")} | {"weights": "EMA"}
    return cfg, net, model, (val.take(iv), val.labels[iv]), (tr.take(it), tr.labels[it])


def gap(args):
    from pra.diagnostics.gap import input_gap
    from pra.io import write_json

    cfg, net, model, (vx, vy), (tx, ty) = _setup(args)
    res = input_gap(net, cfg, vx, vy, tx, ty, permutations=args.permutations, subsamples=args.subsamples) | {"model": model,
                                                                                          "code_hash": args.code_hash}
    write_json(args.out, res)
    print(json.dumps({f"{space}/{k}": round(v.get("excess_mmd2", v["mean_mmd2"]), 5)
                      for space, r in res["spaces"].items() for k, v in r["sets"].items()}))


def approximate(args):
    from pra.diagnostics.approximation import approximation_error
    from pra.io import write_json

    cfg, net, model, (vx, vy), _ = _setup(args)
    res = approximation_error(net, cfg, vx, vy, subsamples=args.subsamples) | {"model": model,
                                                                               "code_hash": args.code_hash}
    write_json(args.out, res)
    if res["applicable"]:
        print(json.dumps({k: round(v["content_ratio"], 4) for k, v in res["constructions"].items()}))
    else:
        print(res["why"])


def accumulate(args):
    from pra.diagnostics.accumulation import error_accumulation
    from pra.evaluate.classifier import load_classifier
    from pra.io import write_json

    cfg, net, model, (vx, vy), (tx, _) = _setup(args)
    clf = load_classifier(args.classifier) if args.classifier else None
    res = error_accumulation(net, cfg, vx, vy, tx, classifier=clf, subsamples=args.subsamples,
                             permutations=args.permutations) | {"model": model, "code_hash": args.code_hash}
    write_json(args.out, res)
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in res["summary"].items()}))
