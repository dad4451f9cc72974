"""Figures (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pick_per_class(images: np.ndarray, labels: np.ndarray, num_classes: int, k: int) -> np.ndarray:
    """The first k images of each class, class-major: [num_classes * k, H, W, C]."""
    out = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)[:k]
        sel = images[idx]
        if len(sel) < k:
            sel = np.concatenate([sel, np.zeros((k - len(sel),) + images.shape[1:], images.dtype)])
        out.append(sel)
    return np.concatenate(out)


def tile(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    n, H, W, C = images.shape
    rows = (n + cols - 1) // cols
    canvas = np.full((rows * (H + pad) + pad, cols * (W + pad) + pad, C), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = im
    return canvas


def sample_grid(panels: list[tuple[str, np.ndarray, np.ndarray]], num_classes: int, out_path: str | Path,
                per_class: int = 2, title: str = "") -> None:
    """One row per panel (label, images, labels): per_class samples of each class, classes left to right."""
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(num_classes * per_class * 0.42 + 2.2, 0.5 * per_class * 0
                                                       + 0.95 * len(panels) + 0.6), squeeze=False)
    for ax, (name, images, labels) in zip(axes[:, 0], panels):
        chosen = pick_per_class(images, labels, num_classes, per_class)
        # class-major -> columns: class c occupies per_class adjacent columns
        strip = tile(chosen, cols=num_classes * per_class)
        ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=150)
    plt.close(fig)
