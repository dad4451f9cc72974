"""Post hoc (not registered): how far apart K2's two decoding contexts are in the trained pra arms.

    python reports/settle3/contexts.py results/settle3-digits reports/settle3/contexts

K2 compares decoding the reconstruction loss with the trunk's pass over the clean patches (h_tf) against the pass
over the renderings (h_own). At t_min 1 the renderings D(z, h_tf) are close to the clean patches, so the two
passes may be close and K2's manipulation small. For every pra run of block k1 (final EMA weights, the 359
validation images, labels kept, the head's target codes z from the unmasked encoder pass) this measures, per
position:

- the relative distance of the contexts, |h_own - h_tf| / |h_tf|, beside a scale reference: the same distance
  between h_tf of an image and h_tf of the next validation image of the same class (another digit of the class);
- what the difference does to the decoder's output: the squared error between D(z, h_own) and D(z, h_tf), beside
  the reconstruction error of D(z, h_tf) against the clean patch.

Positions are split into content positions (ink in at least 20% of the validation images) and blank ones; a
quantity that lives only at blank positions is background rendering, not the digit. Writes `<out>.json` (per run,
per position), `<out>.md` (per arm: median over seeds of the means over positions) and `<out>.png` (per
position, each seed a line).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from pra.checkpoint import load_trained
from pra.diagnostics.approximation import content_positions
from pra.model.patches import image_patches

ARMS = {  # the pra variants of experiments/settle3/digits_context.yaml and their run directories
    "pra_t1_tfctx": "pra/method.recon_context=_teacher_forced_+method.t_min=1.0",
    "pra_t1": "pra/method.t_min=1.0",
}


def same_class_partner(labels: np.ndarray) -> np.ndarray:
    """Index of the next image of the same class (cyclically within the class)."""
    out = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out[idx] = np.roll(idx, -1)
    return out


@torch.no_grad()
def measure(model_path: Path, images: np.ndarray, labels: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
    net, _, _ = load_trained(model_path, "cpu", use_ema=True)
    x = image_patches(images, net.geometry.patch_size)
    y = torch.from_numpy(labels.astype(np.int64))
    z = net.encoder(x)
    h_tf = net.trunk(x[:, :-1], y)
    rendered = net.to_pixels(z, h_tf)
    h_own = net.trunk(rendered[:, :-1], y)
    dec_own = net.to_pixels(z, h_own)
    partner = torch.from_numpy(same_class_partner(labels))
    norm = h_tf.norm(dim=-1)
    return {
        "context_rel": ((h_own - h_tf).norm(dim=-1) / norm).mean(0).numpy(),
        "context_rel_other_image": ((h_tf[partner] - h_tf).norm(dim=-1) / norm).mean(0).numpy(),
        "decoded_change_mse": ((dec_own - rendered) ** 2).mean(-1).mean(0).numpy(),
        "reconstruction_mse": ((rendered - x) ** 2).mean(-1).mean(0).numpy(),
    }, net.geometry.patch_size


def main(argv: list[str]) -> None:
    results, out = Path(argv[0]), Path(argv[1])
    images = np.load(results / "data" / "val-00000.images.npy")
    labels = np.load(results / "data" / "val-00000.labels.npy")
    p = None
    rows = []
    for arm, sub in ARMS.items():
        for run in sorted((results / "runs" / "tiny-S" / sub).glob("s*/model.pt")):
            m, p = measure(run, images, labels)
            rows.append({"arm": arm, "seed": int(run.parent.name[1:]), **{k: v.tolist() for k, v in m.items()}})
    if not rows:
        raise SystemExit(f"no model.pt under {results}/runs/tiny-S: run block k1 first")
    content = content_positions(image_patches(images, p).numpy())
    measured = np.arange(len(content)) > 0  # position 0 is predicted from the class prefix alone: h_own = h_tf
    keys = ("context_rel", "context_rel_other_image", "decoded_change_mse", "reconstruction_mse")
    summary = {}
    for arm in ARMS:
        r = [x for x in rows if x["arm"] == arm]
        summary[arm] = {f"{k}_{where}": float(np.median([np.mean(np.asarray(x[k])[mask & measured]) for x in r]))
                        if (mask & measured).any() else None
                        for k in keys for where, mask in (("content", content), ("blank", ~content))}
        summary[arm]["seeds"] = len(r)
    doc = {"content_positions": content.tolist(), "summary": summary, "runs": rows,
           "source": f"python reports/settle3/contexts.py {results} {out}"}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    n_c, n_b = int((content & measured).sum()), int((~content & measured).sum())
    lines = [f"Post hoc, not registered. Per arm, the median over seeds of the mean over {n_c} content / {n_b} blank "
             f"positions (position 0, decoded from the class prefix alone, left out); {len(labels)} validation images, "
             f"final EMA weights (`{doc['source']}`).",
             "", "| arm | seeds | contexts: norm(h_own - h_tf) / norm(h_tf) | the same for h_tf of another image of the class | "
             "decoded change mse D(z,h_own) vs D(z,h_tf) | reconstruction mse D(z,h_tf) vs x |",
             "|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        cells = [" / ".join("-" if s[f"{k}_{w}"] is None else f"{s[f'{k}_{w}']:.3g}" for w in ("content", "blank"))
                 for k in keys]
        lines.append(f"| {arm} | {s['seeds']} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    figure(rows, content, out.with_suffix(".png"))
    print("\n".join(lines))


def figure(rows: list[dict], content: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    pos = np.arange(len(content))
    for ax, (k, ref, title) in zip(axes, [
            ("context_rel", "context_rel_other_image", "|h_own - h_tf| / |h_tf| (grey: h_tf of another image)"),
            ("decoded_change_mse", "reconstruction_mse", "decoded change mse (grey: reconstruction mse)")]):
        for x in rows:
            colour = "C0" if x["arm"] == "pra_t1" else "C1"
            ax.plot(pos[1:], x[k][1:], color=colour, lw=0.8, alpha=0.7)  # position 0: h_own = h_tf
            ax.plot(pos[1:], x[ref][1:], color="0.6", lw=0.6, alpha=0.5)
        for i in np.flatnonzero(content):
            ax.axvspan(i - 0.5, i + 0.5, color="C2", alpha=0.08, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("position, raster order in the 4x4 grid\n(green: content; position 0 left out)", fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].plot([], [], color="C0", label="pra_t1")
    axes[0].plot([], [], color="C1", label="pra_t1_tfctx")
    axes[0].legend(fontsize=8)
    fig.suptitle("settle3, post hoc: K2's two decoding contexts per position (each line one seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
