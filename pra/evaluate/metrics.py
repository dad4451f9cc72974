"""Sample-quality metrics through upstream torch-fidelity: FID, IS, KID, precision/recall.

Features are extracted once per image set with a torch-fidelity feature extractor, then every metric
is computed from them with torch-fidelity's own functions (FID in float64). Two feature spaces:

* ``inception``: torch-fidelity's ``inception-v3-compat`` with weights read from a local file (the
  ImageNet protocol; comparable with ADM's reference statistics);
* ``classifier``: the CNN trained on the embedded data's train split (pra.evaluate.classifier), for
  the default experiment where Inception weights are neither available nor meaningful.

Every result records the extractor, the weights file, the reference and the sample count.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pra.evaluate.inception_file import INCEPTION_HELP, PUBLISHED_SHA256_PREFIX, check_inception_weights

INCEPTION = "inception-v3-compat"
INCEPTION_DIM = 2048  # pool3, the space of FID, KID, precision/recall and of ADM's reference statistics


@dataclass(frozen=True)
class FeatureSpace:
    kind: str          # "classifier" or "inception"
    weights: str       # local weights file
    sha256_prefix: str = PUBLISHED_SHA256_PREFIX  # what an Inception weights file's digest must start with

    @property
    def extractor(self) -> str:
        if self.kind == "inception":
            return INCEPTION
        from pra.evaluate import extractor

        return extractor.register()

    @property
    def layers(self) -> dict[str, str]:
        """Feature layer per metric (torch-fidelity's names)."""
        if self.kind == "inception":
            return {"fid": "2048", "kid": "2048", "prc": "2048", "isc": "logits_unbiased"}
        return {"fid": "penultimate", "kid": "penultimate", "prc": "penultimate", "isc": "logits"}

    def describe(self) -> str:
        if self.kind == "inception":
            return f"{INCEPTION} pool3 (2048-d), weights {Path(self.weights).name}"
        return "pra-classifier penultimate (64-d), trained on this experiment's train split"

    def check(self) -> None:
        if not self.weights:
            raise FileNotFoundError(INCEPTION_HELP if self.kind == "inception" else "the classifier feature space "
                                    "needs classifier.pt (rule train_classifier or carry_classifier)")
        if not Path(self.weights).exists():
            raise FileNotFoundError(f"feature extractor weights not found: {self.weights}. " +
                                    (INCEPTION_HELP if self.kind == "inception" else ""))
        if self.kind == "inception":
            check_inception_weights(self.weights, self.sha256_prefix)


def feature_space(inception_weights: str, classifier_path: str | Path | None,
                  inception_sha256_prefix: str = PUBLISHED_SHA256_PREFIX) -> FeatureSpace:
    if inception_weights:
        return FeatureSpace("inception", inception_weights, inception_sha256_prefix)
    return FeatureSpace("classifier", str(classifier_path) if classifier_path else "")


@torch.no_grad()
def extract(images_nhwc: np.ndarray, space: FeatureSpace, *, batch_size: int = 250,
            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Features of uint8 NHWC images for every layer the metrics need: {layer: float64 [N, d]}."""
    from torch_fidelity.utils import create_feature_extractor

    space.check()
    device = torch.device(device)
    layers = sorted(set(space.layers.values()))
    fe = create_feature_extractor(space.extractor, layers, cuda=device.type == "cuda",
                                  feature_extractor_weights_path=space.weights, verbose=False)
    out = {k: [] for k in layers}
    with full_fp32_convolutions():
        for i in range(0, len(images_nhwc), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images_nhwc[i:i + batch_size])).permute(0, 3, 1, 2)
            if space.kind == "inception" and x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            feats = fe.convert_features_tuple_to_dict(fe(x.to(device)))
            for k in layers:
                out[k].append(feats[k].detach().to("cpu", torch.float64))
    return {k: torch.cat(v) for k, v in out.items()}


@contextmanager
def full_fp32_convolutions():
    """cuDNN convolutions in full fp32 while features are extracted. torch lets cuDNN use TF32 by default on
    Ampere and later cards, which would put the samples' features on another numeric path than the reference's
    (ADM's statistics come from TensorFlow in fp32; this project's from the same extractor as the samples).
    Matrix products are fp32 by torch's default and left so. No effect on the CPU."""
    c = torch.backends.cudnn
    with c.flags(enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic, allow_tf32=False):
        yield


def statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.to(torch.float64))


def frechet_distance(stat_1: dict, stat_2: dict) -> float:
    """Frechet distance of two Gaussians {mu, sigma}, in float64 (torch-fidelity's implementation)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    s1 = {k: np.asarray(v, dtype=np.float64) for k, v in stat_1.items() if k in ("mu", "sigma")}
    s2 = {k: np.asarray(v, dtype=np.float64) for k, v in stat_2.items() if k in ("mu", "sigma")}
    return float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])


def sample_metrics(sample_feats: dict[str, torch.Tensor], space: FeatureSpace, reference: dict,
                   *, kid_subset_size: int = 1000, prc_neighborhood: int = 3, seed: int = 2020) -> dict:
    """FID, IS, KID and precision/recall of a sample against a reference (see load_reference)."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    L = space.layers
    n = len(sample_feats[L["fid"]])
    out = {"fid": frechet_distance(statistics(sample_feats[L["fid"]]), reference["stats"]), "num_samples": n}
    isc = isc_features_to_metric(sample_feats[L["isc"]].float(), splits=10, shuffle=True, rng_seed=seed)
    out["is"], out["is_std"] = isc["inception_score_mean"], isc["inception_score_std"]
    ref_f = reference.get("features")
    if ref_f is not None:
        ref_f = torch.as_tensor(ref_f, dtype=torch.float64)
        size = min(kid_subset_size, n, len(ref_f))
        kid = kid_features_to_metric(sample_feats[L["kid"]], ref_f, kid_subset_size=size, kid_subsets=100,
                                     rng_seed=seed, verbose=False)
        out["kid"], out["kid_std"], out["kid_subset_size"] = kid["kernel_inception_distance_mean"], \
            kid["kernel_inception_distance_std"], size
        prc = prc_features_to_metric(sample_feats[L["prc"]].float(), ref_f.float(), prc_neighborhood=prc_neighborhood,
                                     prc_batch_size=10000, save_cpu_ram=True, verbose=False)
        out["precision"], out["recall"] = prc["precision"], prc["recall"]
    out["extractor"] = space.describe()
    out["reference"] = reference["description"]
    return out


# ---- reference statistics ------------------------------------------------------------------------
def save_reference(path: str | Path, stats: dict, features: torch.Tensor | None, description: str) -> None:
    from pra.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, mu=stats["mu"], sigma=stats["sigma"],
                     features=features.numpy() if features is not None else np.zeros((0, 0)),
                     description=np.array(description))


def load_reference(path: str | Path) -> dict:
    """A reference written by save_reference (the reference job's output, ADM's batches converted included)."""
    with np.load(path) as f:
        keys = set(f.files)
        if not {"mu", "sigma"} <= keys:
            raise ValueError(f"{path}: reference statistics need 'mu' and 'sigma' arrays (found {sorted(keys)})")
        if "description" not in keys:
            raise ValueError(f"{path}: a reference batch as ADM's evaluator reads it, not this pipeline's reference "
                             "file; set evaluate.reference_stats to it and the reference job converts it once "
                             "(its statistics kept, the features of its images extracted)")
        feats = f["features"]
        return {"stats": {"mu": f["mu"].astype(np.float64), "sigma": f["sigma"].astype(np.float64)},
                "description": str(f["description"]), "features": feats if feats.size else None}
