import numpy as np
import pytest
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


class _Split:
    """A split as the probe reads it (take, labels, len), recording how many images each read asks for."""

    def __init__(self, images, labels):
        self.images, self.labels, self.reads = images, labels, []

    def __len__(self):
        return len(self.images)

    def take(self, idx):
        self.reads.append(len(idx))
        return self.images[np.asarray(idx)]


def _net():
    from conftest import tiny_config
    from pra.model.network import Geometry, PRANetwork
    from pra.model.scales import get_scale

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return PRANetwork(get_scale("tiny-XS"), tiny_config().model,
                          Geometry(resolution=16, channels=1, patch_size=4, num_classes=10), "pra").eval()


def test_probe_reads_a_large_split_in_chunks_and_chooses_the_layer_on_a_subset():
    """At ImageNet scale the train split (1.28M images, ~250 GB as uint8 at 256x256) is never read at once: the
    probe reads `chunk` images at a time, chooses the layer on at most `select_max` of them and probes the
    chosen layer on all; with no cap it equals the probe on features computed in one go."""
    from pra.evaluate.probe import linear_probe, probe_model, trunk_features

    rng = np.random.default_rng(0)
    labels = np.arange(300) % 10
    # the class is readable from the images (its grey level, under noise): a wrong pairing of features and labels
    # in the selection or the final probe falls to chance
    images = (20 * labels[:, None, None, None] + rng.integers(0, 15, (300, 16, 16, 1))).astype(np.uint8)
    train, val = _Split(images[:240], labels[:240]), _Split(images[240:], labels[240:])
    net, kw = _net(), dict(epochs=100, warmup_epochs=5, batch_size=32, base_lr=4.0)
    r = probe_model(net, train, np.arange(240), val, 10, select_max=200, chunk=64, **kw)
    assert max(train.reads + val.reads) <= 64
    assert r["selection_count"] == 200 and r["holdout_count"] == 20 and r["train_count"] == 240
    assert sum(train.reads) == 200 + 240  # every layer of the subset, then the chosen layer of every image
    # the final probe is the chosen layer's probe over every train image
    f = trunk_features(net, images[:240])[r["layer"] - 1]
    fv = trunk_features(net, images[240:])[r["layer"] - 1]
    ref = linear_probe(f, torch.as_tensor(labels[:240]), fv, torch.as_tensor(labels[240:]), 10, **kw)
    assert (r["top1"], r["top5"]) == (ref["top1"], ref["top5"])
    assert r["top1"] > 0.5  # chance: 0.1
    # the layer choice: each block probed on the subset's 90%, scored on its other 10%, rebuilt here directly
    perm = np.random.default_rng(0).permutation(240)
    hold, fit = np.sort(perm[:20]), np.sort(perm[20:200])
    feats = trunk_features(net, images[:240])
    direct = [linear_probe(feats[j, fit], torch.as_tensor(labels[fit]), feats[j, hold], torch.as_tensor(labels[hold]),
                           10, **kw)["top1"] for j in range(len(feats))]
    assert [x["holdout_top1"] for x in r["per_layer_holdout"]] == direct
    # no cap: the same as with one read of the whole split
    short = dict(kw, epochs=2, warmup_epochs=1)
    whole = probe_model(net, _Split(images[:240], labels[:240]), np.arange(240), val, 10, chunk=10_000, **short)
    chunked = probe_model(net, _Split(images[:240], labels[:240]), np.arange(240), val, 10, chunk=64, **short)
    assert whole["per_layer_holdout"] == chunked["per_layer_holdout"] and whole["top1"] == chunked["top1"]
    assert whole["selection_count"] == 240
    with pytest.raises(ValueError, match="hold out"):
        probe_model(net, train, np.arange(240), val, 10, select_max=10, **short)
