"""`python -m pra bench-precision`: what bf16 sampling weights (speed.sample_precision, on by default on CUDA)
change in the samples of one trained model, next to what the sampling noise changes.

From one model.pt, three samples of the same class-balanced labels, batch by batch:
  A   fp32 weights, noise seed s;
  A'  bf16 weights, the same noise (the ODE state stays fp32 in both, as in pra.sample);
  B   fp32 weights, noise seed s + 1 (the seed spread: what a different draw changes);
and A again (fp32, seed s) as the null of the pixel comparison: it must read exactly 0 on a deterministic device.
Reported: the mean absolute pixel difference per AR position (pixels in [-1, 1]) of A' vs A beside B vs A, and
where the positions hold ink (mean |x + 1| of A per position, so that blank positions are not mistaken for
agreement); the classifier's accuracy on each sample and how often A' and B are predicted as A is; the Frechet
distance in the evaluation's feature space of A' to A beside B to A, and with --reference each sample's FID
(what the pipeline reports): FID(A') - FID(A) beside FID(B) - FID(A).

The yardsticks are not like for like: A' shares A's noise while B does not, so a pixel or Frechet difference
of A' against A is paired and one of B against A is not; they show the size of bf16's change next to the
sampling noise, they do not test it. The FID differences against the reference are like for like, but B is a
single draw of the seed spread.
The head ODE runs as the sampling job runs it (CUDA graphs on CUDA, pra.speed).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pra.checkpoint import load_trained
from pra.flow import make_flow
from pra.io import write_json
from pra.model.patches import to_uint8, unpatchify
from pra import speed as S
from pra.config import SpeedConfig
from pra.rollout import SamplerSettings, balanced_labels, rollout
from pra.runtime import generator, resolve_device, set_threads
from pra.sample import batch_seed


@torch.no_grad()
def draw(net, flow, labels: torch.Tensor, settings: SamplerSettings, *, seed: int, batch_size: int,
         device) -> torch.Tensor:
    """Token patches [N, T, P] (float32, in [-1, 1]) of the labels, batch b drawn with pra.sample's seed."""
    out = []
    ode = S.head_ode(flow, net, settings, SpeedConfig(), torch.device(device))  # as pra.sample: graphs on CUDA
    for b in range(0, len(labels), batch_size):
        r = rollout(net, flow, labels[b:b + batch_size].to(device), settings,
                    generator(batch_seed(seed, b // batch_size), device), ode=ode)
        out.append(r.patches.float().cpu())
    return torch.cat(out)


def per_position(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Mean absolute difference per AR position of two [N, T, P] samples."""
    return (a - b).abs().mean(dim=(0, 2)).tolist()


def compare_precisions(model_path: str | Path, *, classifier: str | Path, per_class: int, cfg_scale: float | None,
                       seed: int = 0, batch_size: int = 100, device: str = "auto", threads: int = 1,
                       reference: str | Path | None = None) -> dict:
    from pra.evaluate.classifier import load_classifier, predict
    from pra.evaluate.metrics import extract, feature_space, frechet_distance, load_reference, statistics

    set_threads(threads)
    dev = resolve_device(device)
    use_ema = load_trained(model_path, "cpu")[1].sample.use_ema  # the weights the model's sampling job uses
    net32, cfg, meta = load_trained(model_path, dev, use_ema=use_ema)
    net16 = load_trained(model_path, dev, use_ema=use_ema)[0].to(torch.bfloat16)
    flow = make_flow(cfg.model, net32.latent)
    settings = SamplerSettings.from_config(cfg.sample, **({} if cfg_scale is None else {"cfg_scale": cfg_scale}))
    g = net32.geometry
    labels = balanced_labels(g.num_classes, per_class)
    kw = dict(batch_size=batch_size, device=dev)
    runs = {"A_fp32": draw(net32, flow, labels, settings, seed=seed, **kw),
            "A_fp32_again": draw(net32, flow, labels, settings, seed=seed, **kw),
            "A_bf16": draw(net16, flow, labels, settings, seed=seed, **kw),
            "B_fp32": draw(net32, flow, labels, settings, seed=seed + 1, **kw)}
    a = runs["A_fp32"]
    out = {"model": str(model_path), "scale": meta["scale"], "method": meta["method"], "training_seed": meta["seed"],
           "step": meta["step"], "device": str(dev), "torch": torch.__version__, "samples": len(labels),
           "noise_seed": seed,
           "sampling": {"ode_steps": settings.ode_steps, "solver": settings.solver, "cfg_scale": settings.cfg_scale,
                        "cfg_schedule": settings.cfg_schedule, "use_ema": use_ema},
           "tokens": g.num_tokens,
           "per_position": {"bf16_vs_fp32": per_position(runs["A_bf16"], a),
                            "fp32_seed_vs_seed": per_position(runs["B_fp32"], a),
                            "fp32_repeat": per_position(runs["A_fp32_again"], a),
                            "ink": (a + 1).abs().mean(dim=(0, 2)).tolist()}}
    for k in ("bf16_vs_fp32", "fp32_seed_vs_seed", "fp32_repeat"):
        other = {"bf16_vs_fp32": "A_bf16", "fp32_seed_vs_seed": "B_fp32", "fp32_repeat": "A_fp32_again"}[k]
        d = (runs[other] - a).abs()
        out[k] = {"mean_abs": float(d.mean()), "max_abs": float(d.max())}
    images = {k: to_uint8(unpatchify(v, g.patch_size, g.channels)).numpy() for k, v in runs.items()
              if k != "A_fp32_again"}
    clf = load_classifier(classifier)
    preds = {k: predict(clf, v)[1].argmax(1) for k, v in images.items()}
    y = labels.numpy()
    out["class_accuracy"] = {k: float((p == y).mean()) for k, p in preds.items()}
    out["prediction_agreement_with_A"] = {"A_bf16": float((preds["A_bf16"] == preds["A_fp32"]).mean()),
                                          "B_fp32": float((preds["B_fp32"] == preds["A_fp32"]).mean())}
    space = feature_space(cfg.evaluate.inception_weights, classifier, cfg.evaluate.inception_sha256_prefix)
    feats = {k: extract(v, space, device=dev)[space.layers["fid"]] for k, v in images.items()}
    stats = {k: statistics(f) for k, f in feats.items()}
    out["frechet_to_A"] = {"A_bf16": frechet_distance(stats["A_bf16"], stats["A_fp32"]),
                           "B_fp32": frechet_distance(stats["B_fp32"], stats["A_fp32"])}
    out["feature_space"] = space.describe()
    if reference:
        ref = load_reference(reference)
        out["fid"] = {k: frechet_distance(s, ref["stats"]) for k, s in stats.items()}
        out["fid_minus_A"] = {k: out["fid"][k] - out["fid"]["A_fp32"] for k in ("A_bf16", "B_fp32")}
        out["reference"] = ref["description"]
    return out


def markdown(r: dict) -> str:
    pp = r["per_position"]
    lines = ["# bf16 sampling weights on a trained model (`python -m pra bench-precision`)", "",
             f"Model {r['model']} ({r['scale']}, {r['method']}, training seed {r['training_seed']}, step {r['step']}, "
             f"{'EMA' if r['sampling']['use_ema'] else 'raw'} weights); {r['samples']} samples, {r['sampling']['ode_steps']} {r['sampling']['solver']} steps, CFG "
             f"{r['sampling']['cfg_scale']} ({r['sampling']['cfg_schedule']}); device {r['device']}, torch "
             f"{r['torch']}. A: fp32, noise seed {r['noise_seed']}; A': bf16 weights, the same noise; B: fp32, seed "
             f"{r['noise_seed'] + 1}. Pixels in [-1, 1].", "",
             "| pair | mean abs | max abs |", "|---|---|---|"]
    for k, label in (("fp32_repeat", "A vs A (the null: same weights, same noise)"),
                     ("bf16_vs_fp32", "A' (bf16) vs A"), ("fp32_seed_vs_seed", "B (another seed) vs A")):
        lines.append(f"| {label} | {r[k]['mean_abs']:.2e} | {r[k]['max_abs']:.2e} |")
    ratio = r["bf16_vs_fp32"]["mean_abs"] / max(r["fp32_seed_vs_seed"]["mean_abs"], 1e-12)
    lines += ["", f"- bf16's pixel change is {ratio:.3f} of the seed-to-seed change (mean abs).",
              f"- Classifier accuracy: A {r['class_accuracy']['A_fp32']:.3f}, A' {r['class_accuracy']['A_bf16']:.3f}, "
              f"B {r['class_accuracy']['B_fp32']:.3f}; predicted as A is: A' "
              f"{r['prediction_agreement_with_A']['A_bf16']:.3f}, B {r['prediction_agreement_with_A']['B_fp32']:.3f}.",
              f"- Frechet distance to A ({r['feature_space']}): A' {r['frechet_to_A']['A_bf16']:.3f}, B "
              f"{r['frechet_to_A']['B_fp32']:.3f}."]
    if "fid" in r:
        lines.append("- FID against the reference (" + r["reference"] + "): " +
                     ", ".join(f"{k} {v:.2f}" for k, v in r["fid"].items()) +
                     f"; FID(A') - FID(A) = {r['fid_minus_A']['A_bf16']:+.3f} beside FID(B) - FID(A) = "
                     f"{r['fid_minus_A']['B_fp32']:+.3f} (like for like, but B is one draw of the seed spread, and "
                     f"FID at {r['samples']} samples moves with the sample).")
    lines += ["", "A' shares A's noise and B does not: the pixel and Frechet yardsticks set a paired change beside an "
              "unpaired one; they size bf16's change against the sampling noise, they do not test it."]
    n = len(pp["bf16_vs_fp32"])
    lines += ["", "Per AR position (mean abs; 'ink' = mean |x + 1| of A, 0 on a blank position):", "",
              "| position | A' vs A | B vs A | ratio | ink |", "|---|---|---|---|---|"]
    for i in range(n):
        b, s = pp["bf16_vs_fp32"][i], pp["fp32_seed_vs_seed"][i]
        lines.append(f"| {i} | {b:.2e} | {s:.2e} | {b / s if s > 0 else float('nan'):.3f} | {pp['ink'][i]:.3f} |")
    return "\n".join(lines) + "\n"


def figure(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pp = r["per_position"]
    x = np.arange(len(pp["bf16_vs_fp32"]))
    fig, ax = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax[0].plot(x, pp["fp32_seed_vs_seed"], label="B vs A (another seed)")
    ax[0].plot(x, pp["bf16_vs_fp32"], label="A' (bf16) vs A (same noise)")
    ax[0].plot(x, pp["fp32_repeat"], label="A vs A (null)", ls=":")
    ax[0].set_yscale("symlog", linthresh=1e-4)
    ax[0].set_ylabel("mean |difference|")
    ax[0].legend(fontsize=8)
    ax[1].plot(x, pp["ink"], color="k")
    ax[1].set_ylabel("ink of A (mean |x+1|)")
    ax[1].set_xlabel("AR position")
    fig.suptitle(f"bf16 sampling weights, {r['scale']} {r['method']}, CFG {r['sampling']['cfg_scale']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_precision_job(args):
    r = compare_precisions(args.model, classifier=args.classifier, per_class=args.per_class,
                           cfg_scale=args.cfg_scale, seed=args.seed, batch_size=args.batch_size, device=args.device,
                           threads=args.threads, reference=args.reference)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), r)
    out.with_suffix(".md").write_text(markdown(r))
    figure(r, out.with_suffix(".png"))
    print(json.dumps({k: r[k] for k in ("bf16_vs_fp32", "fp32_seed_vs_seed", "fp32_repeat", "frechet_to_A")}))
