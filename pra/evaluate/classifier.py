"""A small CNN trained on the default data's train split: the feature network of the embedded FID.

Inception weights cannot be downloaded at run time, and Inception features of 32x32 digits would say
little anyway. Like FID's Inception network, this classifier is trained once (on the train split of the
prepared data) and frozen; its penultimate layer gives the features, its logits the class predictions.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pra.data.dataset import PreparedSplit, data_sha256
from pra.io import save_torch, write_json
from pra.runtime import cpu_kernels, cpu_model, generator, set_threads


class Classifier(nn.Module):
    def __init__(self, channels: int, num_classes: int, feat_dim: int = 64):
        super().__init__()
        self.arch = {"channels": channels, "num_classes": num_classes, "feat_dim": feat_dim}

        def conv(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        self.body = nn.Sequential(conv(channels, 32), conv(32, 32), nn.MaxPool2d(2), conv(32, 64), conv(64, 64),
                                  nn.MaxPool2d(2), conv(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(128, feat_dim), nn.ReLU())
        self.fc = nn.Linear(feat_dim, num_classes)

    @staticmethod
    def preprocess(x_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float in [-1, 1]."""
        return x_u8.float() / 127.5 - 1.0

    def forward(self, x_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(self.preprocess(x_u8))
        return f, self.fc(f)


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random translation by up to max_shift pixels (zero = background padding), per batch."""
    if max_shift == 0:
        return x
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2,), generator=gen)).tolist()
    pad = F.pad(x, (max_shift,) * 4)
    H, W = x.shape[-2:]
    return pad[..., max_shift + dy: max_shift + dy + H, max_shift + dx: max_shift + dx + W]


def nhwc_to_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict(model: Classifier, images_u8_nhwc: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    feats, logits = [], []
    for i in range(0, len(images_u8_nhwc), batch):
        f, lg = model(nhwc_to_nchw(images_u8_nhwc[i:i + batch]))
        feats.append(f)
        logits.append(lg)
    return torch.cat(feats).double().numpy(), torch.cat(logits).double().numpy()


def train_classifier(data_dir: str | Path, out_dir: str | Path, *, epochs: int = 15, seed: int = 0,
                     batch_size: int = 64, lr: float = 2e-3, threads: int = 1) -> dict:
    set_threads(threads)
    out_dir = Path(out_dir)
    tr, va = PreparedSplit(data_dir, "train"), PreparedSplit(data_dir, "val")
    x_tr, y_tr = nhwc_to_nchw(tr.all_images()), torch.from_numpy(tr.labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(tr.channels, tr.num_classes)
    gen = generator(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = (len(x_tr) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    max_shift = max(1, tr.resolution // 16)
    t0 = time.time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            _, logits = model(_shift(x_tr[idx], gen, max_shift))
            loss = F.cross_entropy(logits, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    _, logits = predict(model, va.all_images())
    val_acc = float((logits.argmax(1) == va.labels).mean())
    save_torch({"arch": model.arch, "state_dict": model.state_dict()}, out_dir / "classifier.pt")
    info = {"val_accuracy": val_acc, "val_count": len(va), "train_count": len(tr), "epochs": epochs,
            "seconds": time.time() - t0, "feat_dim": model.arch["feat_dim"],
            "sha256": weights_sha256(model), "data_sha256": data_sha256(data_dir), "source": "trained here",
            "cpu_model": cpu_model(), "cpu_kernels": cpu_kernels(), "torch": torch.__version__}
    write_json(out_dir / "classifier.json", info)
    return info


def weights_sha256(model: nn.Module) -> str:
    """Digest of a network's weights and buffers (names, dtypes, shapes, values): the identity of the feature
    space, whatever file holds it."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_carry(source_dir: str | Path, data_dir: str | Path, key: str = "evaluate.classifier_dir") -> tuple[dict, str]:
    """A classifier trained elsewhere may score this experiment only if it was trained on the same images as its
    prepared data (classifier.json's data_sha256), fits their shape and classes, and its file holds the weights its
    info names. Returns (its info, its weights digest); raises naming `key` otherwise. Writes nothing."""
    from pra.io import read_json

    source_dir = Path(source_dir)
    missing = [n for n in ("classifier.pt", "classifier.json") if not (source_dir / n).exists()]
    if missing:
        raise FileNotFoundError(f"{key}: {source_dir} has no {' or '.join(missing)} (the folder "
                                "`python -m pra train-classifier` writes, e.g. results/<experiment>/classifier)")
    info = read_json(source_dir / "classifier.json")
    model = load_classifier(source_dir / "classifier.pt")
    tr = PreparedSplit(data_dir, "train")
    if (model.arch["channels"], model.arch["num_classes"]) != (tr.channels, tr.num_classes):
        raise ValueError(f"{key}: {source_dir}'s classifier takes {model.arch['channels']} channels and "
                         f"{model.arch['num_classes']} classes; the data has {tr.channels} and {tr.num_classes}")
    if "data_sha256" not in info:
        raise ValueError(f"{key}: {source_dir}/classifier.json does not say which images the classifier was "
                         "trained on (no data_sha256: written by an older version); retrain it, or score with a "
                         "classifier trained here")
    here = data_sha256(data_dir)
    if info["data_sha256"] != here:
        raise ValueError(f"{key}: {source_dir}'s classifier was trained on other images (data_sha256 "
                         f"{info['data_sha256'][:16]}) than this experiment's prepared data ({here[:16]})")
    digest = weights_sha256(model)
    if info.get("sha256") not in (None, digest):
        raise ValueError(f"{key}: {source_dir}/classifier.pt does not hold the weights its classifier.json names "
                         f"(sha256 {digest[:16]} against {info['sha256'][:16]})")
    return info, digest


def carry_classifier(source_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    """Score with a classifier trained elsewhere (evaluate.classifier_dir), checked by check_carry, copied (the
    copy's weights verified before it replaces anything) with its info, which says where it came from (`source`:
    this copy's folder; `origin`: where it was trained)."""
    import shutil

    from pra.io import atomic_path

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if out_dir.resolve() == source_dir.resolve():
        raise ValueError(f"carry-classifier: --out {out_dir} is the source folder itself")
    info, digest = check_carry(source_dir, data_dir)
    source = f"carried from {source_dir.resolve()}"
    info = {**info, "sha256": digest, "source": source,
            "origin": info.get("origin") or f"trained in {source_dir.resolve()}"}
    # both files are complete and the copy verified before either replaces what is there
    with atomic_path(out_dir / "classifier.json") as tmp_info, atomic_path(out_dir / "classifier.pt") as tmp:
        shutil.copyfile(source_dir / "classifier.pt", tmp)
        if weights_sha256(load_classifier(tmp)) != digest:
            raise OSError(f"{source_dir}/classifier.pt: the copy does not hold the source's weights")
        write_json(tmp_info, info)
    return info


def load_classifier(path: str | Path) -> Classifier:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = Classifier(**ck["arch"])
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def class_agreement(images: np.ndarray, labels: np.ndarray, classifier_path: str | Path) -> dict:
    """How often the classifier recognises the class a sample was conditioned on."""
    _, logits = predict(load_classifier(classifier_path), images)
    pred = logits.argmax(1)
    per_class = [float((pred[labels == c] == c).mean()) if (labels == c).any() else float("nan")
                 for c in range(logits.shape[1])]
    return {"accuracy": float((pred == labels).mean()), "per_class": per_class}
