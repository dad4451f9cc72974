"""A proxy evaluation: a small class-balanced sample of one network scored against the reference.

What the evaluation along training (pra.evaluate.along) and the guidance sweep (pra.evaluate.guidance)
share: draw per_class x classes samples with the given sampling settings and seed (pra.sample.generate),
then FID, KID and class agreement as the final evaluation computes them. A proxy sample is smaller than
the final one, so its FID is biased upward: it ranks checkpoints or settings, it is not a result.
"""
from __future__ import annotations

import time

from pra.config import EvaluateConfig, SampleConfig, SpeedConfig


def sampling_net(net, speed: SpeedConfig, device):
    """The network as the final sample job holds it: in the speed section's sampling precision (pra.speed), so
    that a proxy ranks checkpoints or guidance scales with the samples the final job will draw."""
    import torch

    from pra import speed as S

    return net.to(S.sampling_dtype(speed, torch.device(device)))


def proxy_metrics(net, flow, s: SampleConfig, *, space, reference: dict, classifier: str | None,
                  evaluate: EvaluateConfig, device, speed: SpeedConfig = SpeedConfig()) -> dict:
    """FID, KID (and class agreement with the classifier) of s.per_class samples per class drawn with seed
    s.seed, by `net` as it is (sampling_net puts it in the final job's precision) with the final job's head
    ODE (eager, or CUDA graphs per `speed`); with the wall time of the whole evaluation and what it ran with."""
    import torch

    from pra import speed as S
    from pra.evaluate.classifier import class_agreement
    from pra.evaluate.metrics import extract, sample_metrics
    from pra.rollout import SamplerSettings, balanced_labels
    from pra.sample import generate

    t0 = time.time()
    dev = torch.device(device)
    labels = balanced_labels(net.geometry.num_classes, s.per_class)
    settings = SamplerSettings.from_config(s)
    images, labs, _ = generate(net, flow, labels, settings, seed=s.seed, batch_size=s.batch_size, device=device,
                               ode=S.head_ode(flow, net, settings, speed, dev))
    m = sample_metrics(extract(images, space, device=device), space, reference,
                       kid_subset_size=min(evaluate.kid_subset_size, len(labs)),
                       prc_neighborhood=evaluate.prc_neighborhood)
    row = {"fid": m["fid"], "kid": m.get("kid"), "num_samples": int(len(labs))}
    if classifier:
        row["class_accuracy"] = class_agreement(images, labs, classifier)["accuracy"]
    row["seconds"] = time.time() - t0
    row["precision"] = str(next(net.parameters()).dtype).replace("torch.", "")
    return row
