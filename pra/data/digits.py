"""The embedded default dataset: scikit-learn's bundled digits, exported as an image folder.

1,797 grayscale 8x8 images with values 0..16, 10 classes. The export writes them as 8-bit PNGs
(value * 255 / 16, rounded) into train/<digit>/ and val/<digit>/ with a fixed stratified split, the
same layout an ImageNet folder has, so one `prepare` step handles both. The export is
deterministic: the hash recorded in data.dvc doubles as a reproducibility check.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np


def export_digits(out_dir: str | Path, val_fraction: float = 0.2, seed: int = 0) -> dict:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # stratified: the same fraction of every class
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        is_val[idx[: int(round(val_fraction * len(idx)))]] = True

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "val": 0}
    for i, (img, lab, v) in enumerate(zip(images, labels, is_val)):
        split = "val" if v else "train"
        folder = tmp / split / str(lab)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / f"{i:04d}.png", optimize=False)
        counts[split] += 1
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return counts
