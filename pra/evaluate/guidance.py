"""The guidance scale chosen as the field chooses it: a sweep on a proxy sample, then the final sample at
the chosen value.

For every value of `sample.cfg_sweep` the run's final model (EMA weights, the run's other sampling
settings) draws a proxy sample of `sample.sweep_per_class` per class with seed `sample.sweep_seed`, apart
from the final sample's `sample.seed`; the value with the lowest proxy FID is chosen (ties: the first
listed) and the sample job draws the final sample at it. The sweep's scores and the choice are the rule's
output (guidance.json), read by the sample job, the report and MLflow. An empty `cfg_sweep` keeps
`sample.cfg_scale` fixed (the settle studies fix it at 1 for every arm). The proxy samples are drawn as the
final job draws: in the speed section's sampling precision and head-ODE mode (recorded as `speed`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch


def sweep(model: str | Path, cfg, *, reference: str | Path, classifier: str | None, device) -> dict:
    from pra.checkpoint import load_trained
    from pra.evaluate.metrics import feature_space, load_reference
    from pra import speed as S
    from pra.evaluate.proxy import proxy_metrics, sampling_net
    from pra.flow import make_flow
    from pra.sample import NonFiniteSamplesError

    s = cfg.sample
    if not s.cfg_sweep:
        raise ValueError("sample.cfg_sweep is empty: nothing to sweep (sample.cfg_scale is used as it is)")
    space = feature_space(cfg.evaluate.inception_weights, classifier, cfg.evaluate.inception_sha256_prefix)
    ref = load_reference(reference)
    net, trained_cfg, meta = load_trained(model, device, use_ema=s.use_ema)
    net = sampling_net(net, cfg.speed, device)  # the final sample job's precision: the choice is made as it samples
    flow = make_flow(trained_cfg.model, net.latent)
    rows = []
    for scale in s.cfg_sweep:
        proxy = dataclasses.replace(s, cfg_scale=float(scale), per_class=s.sweep_per_class, seed=s.sweep_seed)
        try:
            rows.append({"cfg_scale": float(scale), **proxy_metrics(net, flow, proxy, space=space, reference=ref,
                                                                    classifier=classifier, evaluate=cfg.evaluate,
                                                                    device=device, speed=cfg.speed)})
        except NonFiniteSamplesError as e:  # a scale whose rollouts diverge is recorded and never chosen
            rows.append({"cfg_scale": float(scale), "fid": None, "kid": None, "non_finite": str(e)})
    scored = [r for r in rows if r["fid"] is not None]
    if not scored:
        raise NonFiniteSamplesError(f"{model}: every guidance scale of sample.cfg_sweep {list(s.cfg_sweep)} gave "
                                    f"non-finite samples ({rows[0]['non_finite']})")
    best = min(scored, key=lambda r: r["fid"])  # min keeps the first of equal values
    return {"rows": rows, "chosen": best["cfg_scale"], "metric": "fid", "per_class": s.sweep_per_class,
            "seed": s.sweep_seed, "step": int(meta["step"]), "cfg_schedule": s.cfg_schedule,
            "cfg_interval": list(s.cfg_interval), "speed": S.describe(cfg.speed, torch.device(device)),
            "note": "proxy FID (sample.sweep_per_class per class, seed sample.sweep_seed, apart from the final "
                    "sample): it ranks the guidance scales; the final sample is drawn at the chosen one"}
