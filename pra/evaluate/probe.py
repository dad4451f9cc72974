"""Linear probing of the frozen generator (MAE's protocol), and a labelled fast probe for ablations.

Features: the generator (EMA weights) runs teacher-forced on clean real images with the *null* class
label (the true label would leak the answer); the residual stream after a block is average-pooled over
the image tokens. Probe: BatchNorm1d without affine + Linear, LARS, base lr 0.1 x batch/256, warm-up then
cosine (MAE: 10 warm-up epochs of 90, batch 16384). The layer is chosen on a held-out slice of train and
reported on val (top-1/top-5). The backbone is frozen and no augmentation is used, so features are
computed once. Departures from MAE's protocol: no augmentation, the layer chosen among all blocks (iGPT's
choice, not MAE's last layer), average-pooled residual stream instead of a class token.

At ImageNet scale the images are read chunk by chunk (never the whole split at once), the layer is chosen on a
random subset of at most `select_max` train images (all layers' features of that subset only), and the final
probe uses the chosen layer's features of every train image; the heads train on the features' batches on the
job's device.

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
def trunk_features(net, images_u8: np.ndarray, *, batch_size: int = 256, device="cpu",
                   layers: list[int] | None = None) -> torch.Tensor:
    """[layers, N, width] float32 features (every block's, or the 0-based `layers`) for uint8 NHWC images."""
    g = net.geometry
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = patchify(to_unit(torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch_size])).to(device)),
                     g.patch_size)
        null = torch.full((len(x),), net.trunk.null_label, dtype=torch.long, device=device)
        feats = net.trunk.layer_features(x, null)
        out.append(torch.stack([feats[j] for j in layers] if layers is not None else feats).float().cpu())
    return torch.cat(out, dim=1)


def split_features(net, take, idx: np.ndarray, *, chunk: int = 2048, batch_size: int = 256, device="cpu",
                   layers: list[int] | None = None) -> torch.Tensor:
    """trunk_features of the images `take(idx)` (a split's take), read `chunk` images at a time into one
    preallocated tensor: the images of a large split are never held at once."""
    out = None
    for a in range(0, len(idx), chunk):
        f = trunk_features(net, take(idx[a:a + chunk]), batch_size=batch_size, device=device, layers=layers)
        if out is None:
            out = torch.empty(f.shape[0], len(idx), f.shape[2], dtype=f.dtype)
        out[:, a:a + len(f[0])] = f
    return out


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


def _logits(head: nn.Module, f: torch.Tensor, device, batch: int = 65536) -> torch.Tensor:
    """The head's logits of features f (on the CPU), in batches on `device`."""
    return torch.cat([head(f[i:i + batch].to(device)) for i in range(0, len(f), batch)]).cpu()


def linear_probe(f_tr: torch.Tensor, y_tr: torch.Tensor, f_ev: torch.Tensor, y_ev: torch.Tensor, num_classes: int,
                 *, epochs: int = 90, warmup_epochs: int = 10, batch_size: int = 256, base_lr: float = 0.1,
                 seed: int = 0, device="cpu") -> dict:
    """MAE recipe on precomputed features (held on the CPU; each batch goes to `device`, where the head
    trains); returns top-1/top-5 on the evaluation set."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(nn.BatchNorm1d(f_tr.shape[1], affine=False, eps=1e-6), nn.Linear(f_tr.shape[1], num_classes))
        nn.init.trunc_normal_(head[1].weight, std=0.01)
        nn.init.zeros_(head[1].bias)
    head = head.to(device)
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
            loss = F.cross_entropy(head(f_tr[idx].to(device)), y_tr[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    head.eval()
    with torch.no_grad():
        logits = _logits(head, f_ev, device)
    return {"top1": _topk(logits, y_ev, 1), "top5": _topk(logits, y_ev, 5), "steps": total,
            "final_train_loss": float(loss.detach())}


def fast_probe(feats: torch.Tensor, y: torch.Tensor, feats_ev: torch.Tensor, y_ev: torch.Tensor, num_classes: int,
               *, epochs: int = 40, lr: float = 3e-3, batch_size: int = 256, seed: int = 0,
               device="cpu") -> list[dict]:
    """One BN + Linear head per layer, trained jointly with Adam on `device`; feats [L, N, d] (on the CPU).
    Top-1/top-5 per layer."""
    L, n, d = feats.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = nn.ModuleList([nn.Sequential(nn.BatchNorm1d(d, affine=False), nn.Linear(d, num_classes))
                               for _ in range(L)])
    heads = heads.to(device)
    opt = torch.optim.Adam(heads.parameters(), lr=lr)
    gen = generator(seed)
    for _ in range(epochs):
        heads.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:
                continue
            yb = y[idx].to(device)
            loss = sum(F.cross_entropy(h(feats[j, idx].to(device)), yb) for j, h in enumerate(heads))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    heads.eval()
    with torch.no_grad():
        logits = [_logits(h, feats_ev[j], device) for j, h in enumerate(heads)]
        return [{"layer": j + 1, "top1": _topk(lg, y_ev, 1), "top5": _topk(lg, y_ev, 5)} for j, lg in enumerate(logits)]


def probe_model(net, train, train_idx: np.ndarray, val, num_classes: int, *, holdout_fraction: float = 0.1,
                epochs: int = 90, warmup_epochs: int = 10, batch_size: int = 256, base_lr: float = 0.1,
                select_max: int = 0, seed: int = 0, device="cpu", chunk: int = 2048) -> dict:
    """Full protocol on the train images `train_idx` of split `train` and every image of `val` (splits with
    `take(idx)`, `labels` and `len`): the layer is chosen on a held-out slice of a random subset of at most
    `select_max` of those train images (0: all), then probed on every one of them and reported on val."""
    t0 = time.time()
    train_idx = np.asarray(train_idx)
    n = len(train_idx)
    y_tr = torch.as_tensor(np.asarray(train.labels)[train_idx])
    y_va = torch.as_tensor(np.asarray(val.labels))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_sel = min(n, select_max) if select_max else n
    n_hold = max(num_classes, int(round(holdout_fraction * n_sel)))
    if n_hold >= n_sel:
        raise ValueError(f"probe: {n_sel} images to choose the layer on cannot hold out {n_hold} (at least one per "
                         "class) and keep some to fit")
    sel = np.sort(perm[:n_sel])  # rows of train_idx; every row when n_sel == n
    pos = np.empty(n, dtype=np.int64)
    pos[sel] = np.arange(n_sel)
    hold, fit = np.sort(perm[:n_hold]), np.sort(perm[n_hold:n_sel])
    kw = dict(epochs=epochs, warmup_epochs=warmup_epochs, batch_size=batch_size, base_lr=base_lr, seed=seed,
              device=device)
    f_sel = split_features(net, train.take, train_idx[sel], chunk=chunk, device=device)
    f_va = split_features(net, val.take, np.arange(len(val)), chunk=chunk, device=device)
    h_t, f_t = torch.as_tensor(pos[hold]), torch.as_tensor(pos[fit])
    per_layer = []
    for j in range(f_sel.shape[0]):
        r = linear_probe(f_sel[j, f_t], y_tr[fit], f_sel[j, h_t], y_tr[hold], num_classes, **kw)
        per_layer.append({"layer": j + 1, "holdout_top1": r["top1"], "holdout_top5": r["top5"]})
    best = max(per_layer, key=lambda r: (r["holdout_top1"], r["layer"]))["layer"]
    f_best = (f_sel[best - 1] if n_sel == n
              else split_features(net, train.take, train_idx, chunk=chunk, device=device, layers=[best - 1])[0])
    final = linear_probe(f_best, y_tr, f_va[best - 1], y_va, num_classes, **kw)
    fast = fast_probe(f_sel, y_tr[torch.as_tensor(sel)], f_va, y_va, num_classes, seed=seed, device=device)
    return {"protocol": "MAE-style linear probe: frozen EMA generator, null label, teacher-forced on clean images, "
                        "avg-pooled block output, BN(affine=False)+Linear, LARS, warm-up + cosine; no augmentation, "
                        "layer chosen on a held-out slice of train",
            "layer": best, "top1": final["top1"], "top5": final["top5"], "per_layer_holdout": per_layer,
            "holdout_count": int(n_hold), "selection_count": int(n_sel), "train_count": int(n),
            "val_count": int(len(y_va)), "epochs": epochs, "warmup_epochs": warmup_epochs, "batch_size": batch_size,
            "lr": base_lr * batch_size / 256, "fast_probe": fast,
            "fast_probe_note": "fast probe: Adam (lr 3e-3), 40 epochs, one head per layer, trained on the layer-"
                               "selection images, reported on val (for ablations, not headline numbers)",
            "seconds": time.time() - t0}
