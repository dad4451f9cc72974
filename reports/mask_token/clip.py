"""The encoder mask token's share of the global gradient norm, and the gradient clip's factor, over the default
training (tiny-S, pra, the digits default, config/config.yaml: 1000 steps x 64, grad_clip 1.0), with the mask
token started at zero (as before e27131d) and at N(0, 0.02) (after); every other parameter, the batches and the
noise are identical between the two.

    python reports/mask_token/clip.py results/default/data reports/mask_token/clip.json

(results/default/data: the default run's prepared data, after `make run` or `dvc repro`.) Run from the
repository root, on the CPU.
"""
import json
import sys

import numpy as np
import torch

from pra.checkpoint import build_network, geometry_of
from pra.config import load
from pra.data.dataset import PreparedSplit
from pra.model.patches import patchify, to_unit
from pra.noise import Noise
from pra.runtime import generator
from pra.step import TrainStep

data_dir, out = sys.argv[1], sys.argv[2]
cfg = load("config/config.yaml")
train = PreparedSplit(data_dir, "train")
geometry = geometry_of(cfg, train)
result = {"config": "config/config.yaml", "scale": "tiny-S", "method": "pra", "steps": cfg.train.steps,
          "batch_size": cfg.train.batch_size, "grad_clip": cfg.train.grad_clip, "torch": torch.__version__}
for init in ("zero", "normal"):
    net = build_network(cfg, "tiny-S", "pra", geometry, init_seed=0)
    if init == "zero":
        net.encoder.mask_token.data.zero_()
    step = TrainStep(cfg, net, "pra", torch.device("cpu"))
    rng, noise = np.random.default_rng(0), Noise(generator(0))
    rows = {"share": [], "clip_factor": [], "grad_norm": [], "loss": []}
    for s in range(cfg.train.steps):
        idx = np.sort(rng.choice(len(train), cfg.train.batch_size, replace=False))
        x = patchify(to_unit(torch.from_numpy(train.take(idx))), geometry.patch_size)
        r = step(x, torch.as_tensor(train.labels[idx]), noise, s)
        total = float(r.grad_norm)                       # before clipping
        factor = min(1.0, cfg.train.grad_clip / total)   # the clip scales every gradient by this
        g = net.encoder.mask_token.grad                  # after clipping
        mask = float(g.norm()) / factor if g is not None else 0.0
        rows["share"].append(round(mask / total, 5))
        rows["clip_factor"].append(round(factor, 5))
        rows["grad_norm"].append(round(total, 5))
        rows["loss"].append(round(float(r.loss), 5))
    share, factor = np.array(rows["share"]), np.array(rows["clip_factor"])
    result[init] = {"per_step": rows,
                    "share_median_per_100_steps": [float(np.median(share[i:i + 100])) for i in range(0, len(share), 100)],
                    "clip_factor_median_per_100_steps": [float(np.median(factor[i:i + 100]))
                                                         for i in range(0, len(factor), 100)],
                    "final_loss_mean_last_50": float(np.mean(rows["loss"][-50:]))}
    print(init, {k: (np.round(v, 3).tolist() if isinstance(v, list) else round(v, 4))
                 for k, v in result[init].items() if k != "per_step"}, "first steps' share:", rows["share"][:5])
with open(out, "w") as fh:
    json.dump(result, fh)
