"""A proxy evaluation: a small class-balanced sample of one network scored against the reference.

What the evaluation along training (pra.evaluate.along) and the guidance sweep (pra.evaluate.guidance)
share: draw per_class x classes samples with the given sampling settings and seed (pra.sample.generate),
then FID, KID and class agreement as the final evaluation computes them. A proxy sample is smaller than
the final one, so its FID is biased upward: it ranks checkpoints or settings, it is not a result.
"""
from __future__ import annotations

import time

from pra.config import EvaluateConfig, SampleConfig


def proxy_metrics(net, flow, s: SampleConfig, *, space, reference: dict, classifier: str | None,
                  evaluate: EvaluateConfig, device) -> dict:
    """FID, KID (and class agreement with the classifier) of s.per_class samples per class drawn with seed
    s.seed; with the wall time of the whole evaluation."""
    from pra.evaluate.classifier import class_agreement
    from pra.evaluate.metrics import extract, sample_metrics
    from pra.rollout import SamplerSettings, balanced_labels
    from pra.sample import generate

    t0 = time.time()
    labels = balanced_labels(net.geometry.num_classes, s.per_class)
    images, labs, _ = generate(net, flow, labels, SamplerSettings.from_config(s), seed=s.seed,
                               batch_size=s.batch_size, device=device)
    m = sample_metrics(extract(images, space, device=device), space, reference,
                       kid_subset_size=min(evaluate.kid_subset_size, len(labs)),
                       prc_neighborhood=evaluate.prc_neighborhood)
    row = {"fid": m["fid"], "kid": m.get("kid"), "num_samples": int(len(labs))}
    if classifier:
        row["class_accuracy"] = class_agreement(images, labs, classifier)["accuracy"]
    row["seconds"] = time.time() - t0
    return row
