import numpy as np
import torch

from pra.evaluate.probe import fast_probe, linear_probe


def _blobs(n, d=32, k=10, seed=0, sep=6.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * sep
    y = torch.arange(n) % k
    return centers[y] + torch.randn(n, d, generator=g), y


def test_probe_separates_linearly_separable_features():
    x, y = _blobs(1500)
    x, y, xe, ye = x[:1000], y[:1000], x[1000:], y[1000:]  # same class centres, fresh points
    r = linear_probe(x, y, xe, ye, 10, epochs=30, warmup_epochs=3, batch_size=128, base_lr=4.0)
    assert r["top1"] > 0.98 and r["top5"] == 1.0


def test_probe_is_at_chance_on_random_labels():
    x, _ = _blobs(1000)
    y = torch.from_numpy(np.random.default_rng(0).integers(0, 10, 1000))
    xe, _ = _blobs(1000, seed=3)
    ye = torch.from_numpy(np.random.default_rng(1).integers(0, 10, 1000))
    r = linear_probe(x, y, xe, ye, 10, epochs=30, warmup_epochs=3, batch_size=128, base_lr=4.0)
    assert abs(r["top1"] - 0.1) < 0.05


def test_fast_probe_ranks_informative_layer_first():
    x, y = _blobs(800, sep=4.0)
    noise = torch.randn(800, 32, generator=torch.Generator().manual_seed(9))
    xe, ye = x[600:], y[600:]
    feats = torch.stack([noise[:600], x[:600]])
    feats_ev = torch.stack([noise[600:], xe])
    res = fast_probe(feats, y[:600], feats_ev, ye, 10, epochs=40, lr=3e-3)
    assert res[1]["top1"] > 0.9 > 0.3 > res[0]["top1"]
