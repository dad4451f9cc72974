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
                per_class: int = 4, title: str = "", cols: int = 2) -> None:
    """One panel per (name, images, labels): classes left to right, per_class samples top to bottom."""
    plt = _plt()
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, (0.42 * per_class + 0.5) * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, images, labels) in zip(axes.flat, panels):
        chosen = pick_per_class(images, labels, num_classes, per_class)            # class-major
        chosen = chosen.reshape(num_classes, per_class, *chosen.shape[1:]).swapaxes(0, 1)
        grid = tile(chosen.reshape(-1, *chosen.shape[2:]), cols=num_classes)      # row = sample index
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=150)
    plt.close(fig)
