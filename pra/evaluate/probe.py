"""Linear probing of the frozen generator (MAE's protocol), and a labelled fast probe for ablations.

Features: the generator (EMA weights) runs teacher-forced on clean real images with the *null* class
label (the true label would leak the answer); the residual stream after a block is average-pooled over
the image tokens. Probe: BatchNorm1d without affine + Linear, LARS, base lr 0.1 x batch/256, warm-up then
cosine (MAE: 10 warm-up epochs of 90, batch 16384). The layer is chosen on a held-out slice of train and
reported on val (top-1/top-5). The backbone is frozen and no augmentation is used, so features are
computed once.

Fast probe (labelled as such wherever reported): the same features, one Linear head per layer trained
jointly with Adam for a few epochs; for ablations, not for headline numbers.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pra.model.patches import patchify, to_unit
from pra.runtime import generator


@torch.no_grad()
def trunk_features(net, images_u8: np.ndarray, *, batch_size: int = 256, device="cpu") -> torch.Tensor:
    """[depth, N, width] float32 features of every block for uint8 NHWC images."""
    g = net.geometry
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = patchify(to_unit(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch_size])).to(device)),
                     g.patch_size)
        null = torch.full((len(x),), net.trunk.null_label, dtype=torch.long, device=device)
        out.append(torch.stack(net.trunk.layer_features(x, null)).float().cpu())
    return torch.cat(out, dim=1)


class LARS(torch.optim.Optimizer):
    """LARS as in MAE's linear probing: SGD with momentum and a layer-wise trust ratio on >1-D weights."""

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    pn, un = torch.norm(p), torch.norm(dp)
                    q = torch.where(pn > 0., torch.where(un > 0, (g["trust_coefficient"] * pn / un), 1.0), 1.0)
                    dp = dp.mul(q)
                st = self.state[p]
                if "mu" not in st:
                    st["mu"] = torch.zeros_like(p)
                mu = st["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def _topk(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    return float((logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).float().mean())


def linear_probe(f_tr: torch.Tensor, y_tr: torch.Tensor, f_ev: torch.Tensor, y_ev: torch.Tensor, num_classes: int,
                 *, epochs: int = 90, warmup_epochs: int = 10, batch_size: int = 256, base_lr: float = 0.1,
                 seed: int = 0) -> dict:
    """MAE recipe on precomputed features; returns top-1/top-5 on the evaluation set."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(nn.BatchNorm1d(f_tr.shape[1], affine=False, eps=1e-6), nn.Linear(f_tr.shape[1], num_classes))
        nn.init.trunc_normal_(head[1].weight, std=0.01)
        nn.init.zeros_(head[1].bias)
    lr = base_lr * batch_size / 256
    opt = LARS(head.parameters(), lr=lr, weight_decay=0.0)
    gen = generator(seed)
    n = len(f_tr)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        head.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            e = step / steps_per_epoch  # fractional epoch (MAE's per-iteration schedule)
            cur = lr * e / warmup_epochs if e < warmup_epochs else \
                lr * 0.5 * (1 + math.cos(math.pi * (e - warmup_epochs) / max(1e-8, epochs - warmup_epochs)))
            for g in opt.param_groups:
                g["lr"] = cur
            idx = perm[i * batch_size:(i + 1) * batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(head(f_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    head.eval()
    with torch.no_grad():
        logits = head(f_ev)
    return {"top1": _topk(logits, y_ev, 1), "top5": _topk(logits, y_ev, 5), "steps": total,
            "final_train_loss": float(loss.detach())}


def fast_probe(feats: torch.Tensor, y: torch.Tensor, feats_ev: torch.Tensor, y_ev: torch.Tensor, num_classes: int,
               *, epochs: int = 40, lr: float = 3e-3, batch_size: int = 256, seed: int = 0) -> list[dict]:
    """One BN + Linear head per layer, trained jointly with Adam; feats [L, N, d]. Top-1/top-5 per layer."""
    L, n, d = feats.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = nn.ModuleList([nn.Sequential(nn.BatchNorm1d(d, affine=False), nn.Linear(d, num_classes))
                               for _ in range(L)])
    opt = torch.optim.Adam(heads.parameters(), lr=lr)
    gen = generator(seed)
    for _ in range(epochs):
        heads.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:
                continue
            loss = sum(F.cross_entropy(h(feats[j, idx]), y[idx]) for j, h in enumerate(heads))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    heads.eval()
    with torch.no_grad():
        return [{"layer": j + 1, "top1": _topk(h(feats_ev[j]), y_ev, 1), "top5": _topk(h(feats_ev[j]), y_ev, 5)}
                for j, h in enumerate(heads)]


def probe_model(net, train_images, train_labels, val_images, val_labels, num_classes: int, *,
                holdout_fraction: float = 0.1, epochs: int = 90, warmup_epochs: int = 10, batch_size: int = 256,
                base_lr: float = 0.1, seed: int = 0, device="cpu") -> dict:
    """Full protocol: layer chosen on a held-out slice of train (MAE recipe), reported on val."""
    t0 = time.time()
    f_tr = trunk_features(net, train_images, device=device)
    f_va = trunk_features(net, val_images, device=device)
    y_tr, y_va = torch.as_tensor(train_labels), torch.as_tensor(val_labels)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y_tr))
    n_hold = max(num_classes, int(round(holdout_fraction * len(y_tr))))
    hold, fit = torch.as_tensor(np.sort(perm[:n_hold])), torch.as_tensor(np.sort(perm[n_hold:]))
    kw = dict(epochs=epochs, warmup_epochs=warmup_epochs, batch_size=batch_size, base_lr=base_lr, seed=seed)
    per_layer = []
    for j in range(f_tr.shape[0]):
        r = linear_probe(f_tr[j, fit], y_tr[fit], f_tr[j, hold], y_tr[hold], num_classes, **kw)
        per_layer.append({"layer": j + 1, "holdout_top1": r["top1"], "holdout_top5": r["top5"]})
    best = max(per_layer, key=lambda r: (r["holdout_top1"], r["layer"]))["layer"]
    final = linear_probe(f_tr[best - 1], y_tr, f_va[best - 1], y_va, num_classes, **kw)
    fast = fast_probe(f_tr, y_tr, f_va, y_va, num_classes, seed=seed)
    return {"protocol": "MAE linear probe: frozen EMA generator, null label, teacher-forced on clean images, "
                        "avg-pooled block output, BN(affine=False)+Linear, LARS, warm-up + cosine",
            "layer": best, "top1": final["top1"], "top5": final["top5"], "per_layer_holdout": per_layer,
            "holdout_count": int(n_hold), "train_count": int(len(y_tr)), "val_count": int(len(y_va)),
            "epochs": epochs, "warmup_epochs": warmup_epochs, "batch_size": batch_size,
            "lr": base_lr * batch_size / 256, "fast_probe": fast,
            "fast_probe_note": "fast probe: Adam (lr 3e-3), 40 epochs, one head per layer, trained on train, reported on val "
                               "(for ablations, not headline numbers)",
            "seconds": time.time() - t0}
