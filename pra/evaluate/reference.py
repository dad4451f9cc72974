"""Reference statistics of real images in a feature space, computed once per experiment.

mu/sigma come from every image of the reference split (accumulated in float64, streaming: memory does
not grow with the split); the features of a fixed random subset are kept for KID and precision/recall.
If the user gives a reference file (e.g. ADM's VIRTUAL_imagenet256_labeled.npz) it is used instead.
The real validation split is scored against the same reference: the floor every sample is compared to.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pra.data.dataset import PreparedSplit, subsample
from pra.evaluate.metrics import FeatureSpace, extract, load_reference, sample_metrics, save_reference


class StreamingStats:
    def __init__(self):
        self.n, self.s, self.ss = 0, None, None

    def update(self, f: torch.Tensor) -> None:
        f = f.to(torch.float64)
        if self.s is None:
            self.s, self.ss = torch.zeros(f.shape[1], dtype=torch.float64), torch.zeros(f.shape[1], f.shape[1],
                                                                                       dtype=torch.float64)
        self.n += len(f)
        self.s += f.sum(0)
        self.ss += f.T @ f

    def result(self) -> dict:
        mu = self.s / self.n
        sigma = (self.ss - self.n * torch.outer(mu, mu)) / (self.n - 1)  # unbiased, as np.cov
        return {"mu": mu.numpy(), "sigma": sigma.numpy()}


def compute_reference(data: str | Path, split: str, space: FeatureSpace, out: str | Path, *, keep: int = 10000,
                      chunk: int = 5000, device="cpu", seed: int = 0) -> dict:
    ds = PreparedSplit(data, split)
    keep_idx = set(subsample(len(ds), keep, seed).tolist())
    layer_fid, layer_prc = space.layers["fid"], space.layers["prc"]
    stats, kept = StreamingStats(), []
    for start in range(0, len(ds), chunk):
        idx = np.arange(start, min(start + chunk, len(ds)))
        feats = extract(ds.take(idx), space, device=device)
        stats.update(feats[layer_fid])
        sel = [i - start for i in idx if i in keep_idx]
        if sel:
            kept.append(feats[layer_prc][sel])
    desc = f"{split} split of the prepared data ({len(ds)} images; {len(keep_idx)} kept for KID/precision/recall)"
    save_reference(out, stats.result(), torch.cat(kept) if kept else None, desc)
    return {"count": len(ds), "kept": len(keep_idx), "description": desc}


def floor_metrics(data: str | Path, reference_path: str | Path, space: FeatureSpace, *, kid_subset_size: int,
                  prc_neighborhood: int, device="cpu") -> dict:
    """The real validation split scored exactly like a sample."""
    val = PreparedSplit(data, "val")
    feats = extract(val.all_images(), space, device=device)
    ref = load_reference(reference_path, space)
    return sample_metrics(feats, space, ref, kid_subset_size=kid_subset_size, prc_neighborhood=prc_neighborhood)
