"""Evaluation along training: a proxy FID/KID (and class agreement) of every snapshot of one run.

Training with `train.snapshot_every: N` keeps the network every N steps (EMA and raw weights, in the
model.pt format: pra.checkpoint). This job samples a small class-balanced proxy set from each snapshot and
from the final model, once with the EMA weights and once with the raw ones, with the run's sampling
settings (`sample`) but its own size (`evaluate.snapshot_per_class`) and seed (`evaluate.snapshot_seed`,
disjoint from the final sample's `sample.seed`), and scores it against the reference as `evaluate` does.
A proxy set is smaller than the final sample, so its FID is biased upward and noisier: the curve shows the
trend along training and the EMA-vs-raw choice, not numbers comparable with eval.json. Each row records
its wall time (the cost of one snapshot evaluation).
"""
from __future__ import annotations

import re
import dataclasses
from pathlib import Path

import numpy as np

SNAPSHOT = re.compile(r"step-(\d+)\.pt$")


def snapshot_files(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the snapshots in a run's snapshots/ folder, by step."""
    out = []
    for p in Path(folder).glob("step-*.pt"):
        m = SNAPSHOT.search(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def evaluate_checkpoint(path: Path, use_ema: bool, cfg, space, reference: dict, classifier, device,
                        cfg_scale: float | None = None) -> dict:
    """Proxy metrics of one checkpoint's samples (EMA or raw weights); cfg_scale: the run's swept guidance."""
    from pra.checkpoint import load_trained
    from pra.evaluate.proxy import proxy_metrics, sampling_net
    from pra.flow import make_flow
    from pra.sample import NonFiniteSamplesError

    s = dataclasses.replace(cfg.sample, per_class=cfg.evaluate.snapshot_per_class, seed=cfg.evaluate.snapshot_seed,
                            **({"cfg_scale": cfg_scale} if cfg_scale is not None else {}))
    net, trained_cfg, meta = load_trained(path, device, use_ema=use_ema)
    net = sampling_net(net, cfg.speed, device)  # as the final sample job holds it
    try:
        row = proxy_metrics(net, make_flow(trained_cfg.model, net.latent), s, space=space, reference=reference,
                            classifier=classifier, evaluate=cfg.evaluate, device=device, speed=cfg.speed)
    except NonFiniteSamplesError as e:  # a diverging network is a finding about the run: the job stops, naming it
        raise NonFiniteSamplesError(f"{path} ({'EMA' if use_ema else 'raw'} weights, step {meta['step']}): {e}") \
            from None
    return {"step": int(meta["step"]), "weights": "ema" if use_ema else "raw", **row}


def along_training(snapshots: str | Path, final_model: str | Path, cfg, *, reference: str | Path,
                   classifier: str | None, device, cfg_scale: float | None = None) -> dict:
    """Every snapshot and the final model, EMA and raw: the rows of along_training.json. cfg_scale: the guidance
    scale the run's sweep chose (None: sample.cfg_scale)."""
    from pra.evaluate.metrics import feature_space, load_reference

    space = feature_space(cfg.evaluate.inception_weights, classifier, cfg.evaluate.inception_sha256_prefix)
    ref = load_reference(reference)
    points = snapshot_files(snapshots) + [(None, Path(final_model))]
    rows = [evaluate_checkpoint(p, ema, cfg, space, ref, classifier, device, cfg_scale)
            for _, p in points for ema in (True, False)]
    secs = [r["seconds"] for r in rows]
    return {"rows": rows, "cfg_scale": cfg.sample.cfg_scale if cfg_scale is None else cfg_scale, "per_class": cfg.evaluate.snapshot_per_class, "seed": cfg.evaluate.snapshot_seed,
            "seconds_per_evaluation": float(np.mean(secs)) if secs else None,
            "note": "proxy sample (evaluate.snapshot_per_class per class): FID biased upward and noisier than "
                    "the final evaluation's; for the trend along training and EMA vs raw weights"}
