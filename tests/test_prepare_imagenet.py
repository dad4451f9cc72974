"""`prepare` on a generated fake ImageNet tree: crops, labels, manifest, bad files, resume."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from pra.data.dataset import PreparedSplit
from pra.data.imagefolder import center_crop_arr
from pra.data.prepare import BadImagesError, EmptySplitError, prepare

WNIDS = ["n01440764", "n01443537", "n01484850"]


def _img(rng, w, h, mode="RGB"):
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr, "RGB")
    return im.convert(mode) if mode != "RGB" else im


@pytest.fixture()
def fake_imagenet(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imagenet"
    sizes = [(500, 375), (375, 500), (40, 30), (256, 256), (1024, 700)]
    for c, wnid in enumerate(WNIDS):
        for i, (w, h) in enumerate(sizes):
            d = root / "train" / wnid
            d.mkdir(parents=True, exist_ok=True)
            mode = {0: "RGB", 1: "L", 2: "CMYK"}[(i + c) % 3]
            _img(rng, w, h, mode).save(d / f"{wnid}_{i}.JPEG", "JPEG", quality=90)
    (root / "train" / WNIDS[0] / "palette.png").parent.mkdir(exist_ok=True)
    _img(rng, 64, 48).convert("P").save(root / "train" / WNIDS[0] / "palette.png")
    corrupt = root / "train" / WNIDS[1] / "corrupt.JPEG"
    good = (root / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG").read_bytes()
    corrupt.write_bytes(good[: len(good) // 3])  # truncated JPEG
    (root / "train" / WNIDS[2] / "not_an_image.JPEG").write_bytes(b"hello")
    # flat val with a Kaggle-style label file
    (root / "val").mkdir()
    lines = ["ImageId,PredictionString"]
    for i in range(6):
        name = f"ILSVRC2012_val_{i + 1:08d}"
        _img(rng, 300, 200).save(root / "val" / f"{name}.JPEG", "JPEG")
        lines.append(f"{name},{WNIDS[i % 3]} 1 2 3 4")
    (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    return root


def test_center_crop_matches_adm():
    rng = np.random.default_rng(1)
    im = _img(rng, 1000, 600)
    out = center_crop_arr(im, 64)
    assert out.shape == (64, 64, 3)
    # ADM: 1000x600 -> box-halved to 500x300, 250x150, 125x75 -> bicubic to 107x64 -> center crop
    ref = im.resize((500, 300), Image.BOX).resize((250, 150), Image.BOX).resize((125, 75), Image.BOX)
    ref = ref.resize((107, 64), Image.BICUBIC)
    ref = np.array(ref)[:, (107 - 64) // 2:(107 - 64) // 2 + 64]
    assert np.array_equal(out, ref)
    small = center_crop_arr(_img(rng, 20, 10), 64)  # too small: upscaled the same way
    assert small.shape == (64, 64, 3)


def test_prepare_fake_imagenet(tmp_path, fake_imagenet):
    out = tmp_path / "prep"
    with pytest.raises(BadImagesError, match="corrupt.JPEG"):
        prepare(fake_imagenet, out, resolution=32, channels=3, shard_size=4, workers=2, progress=False,
                val_labels=fake_imagenet / "LOC_val_solution.csv")
    assert not (out / "manifest.json").exists()
    bad = json.loads((out / "bad_files.json").read_text())
    assert sorted(os.path.basename(b["path"]) for b in bad) == ["corrupt.JPEG", "not_an_image.JPEG"]

    m = prepare(fake_imagenet, out, resolution=32, channels=3, shard_size=4, workers=2, progress=False,
                on_bad_image="skip", val_labels=fake_imagenet / "LOC_val_solution.csv")
    assert m["classes"] == WNIDS and m["bad_files"] == 2
    assert json.loads((out / "classes.json").read_text()) == {w: i for i, w in enumerate(WNIDS)}
    tr = PreparedSplit(out, "train")
    assert len(tr) == 16 and m["splits"]["train"]["inputs"] == 18  # 3x5 + palette, minus 0 of 16 good
    assert m["splits"]["train"]["per_class"] == [6, 5, 5]
    x = tr.all_images()
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.uint8
    assert tr.labels.tolist() == sorted(tr.labels.tolist())
    va = PreparedSplit(out, "val")
    assert va.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # grayscale and CMYK inputs became 3-channel; a grayscale source has equal channels
    gray_path = fake_imagenet / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG"
    with Image.open(gray_path) as im:
        assert im.mode == "L"
    files = sorted(p for p in (fake_imagenet / "train" / WNIDS[0]).iterdir())
    k = [p.name for p in files].index(gray_path.name)
    assert np.array_equal(x[k][..., 0], x[k][..., 1])


def test_prepare_resumes_finished_shards(tmp_path, fake_imagenet):
    out = tmp_path / "prep"
    kw = dict(resolution=16, channels=3, shard_size=4, workers=1, progress=False, on_bad_image="skip",
              val_labels=fake_imagenet / "LOC_val_solution.csv")
    prepare(fake_imagenet, out, **kw)
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("train-*.images.npy")}
    # shards with unreadable files are read again by every run (the files may have been fixed)
    clean = {n for n in first if not json.loads((out / n.replace(".images.npy", ".json")).read_text())["bad"]}
    assert 0 < len(clean) < len(first)
    before = PreparedSplit(out, "train").all_images()
    # simulate an interruption: the last clean train shard and the manifest are gone
    last = sorted(clean)[-1]
    (out / last).unlink()
    (out / "manifest.json").unlink()
    m = prepare(fake_imagenet, out, **kw)
    assert m["reused_shards"] == len(clean) - 1 + 2  # every clean train shard but one, and both val shards
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("train-*.images.npy")}
    assert all(again[n] == first[n] for n in clean if n != last)
    assert np.array_equal(PreparedSplit(out, "train").all_images(), before)
    # a truncated shard (a full disk, a killed copy) is rebuilt, not reused
    victim = out / sorted(clean)[0]
    victim.write_bytes(victim.read_bytes()[:200])
    m = prepare(fake_imagenet, out, **kw)
    assert m["reused_shards"] == len(clean) - 1 + 2
    assert np.array_equal(PreparedSplit(out, "train").all_images(), before)
    # a changed setting invalidates every shard
    m = prepare(fake_imagenet, out, **{**kw, "resolution": 8})
    assert m["reused_shards"] == 0 and PreparedSplit(out, "train").all_images().shape[1] == 8


def test_a_reprepare_keeps_the_data_digest_and_a_changed_loader_rebuilds_every_shard(tmp_path, fake_imagenet,
                                                                                     monkeypatch):
    """The training checkpoint's data digest is the data's, not the preparing run's: the same folder prepared
    again, or mounted elsewhere, reuses its shards and keeps the digest (a resume stays possible); a change of
    the loading code or of Pillow (loader_identity) rebuilds every shard and changes the digest."""
    import shutil

    from pra.checkpoint import data_digest
    from pra.data import prepare as P

    out = tmp_path / "prep"
    kw = dict(resolution=16, channels=3, shard_size=4, workers=1, progress=False, on_bad_image="skip")
    labels = fake_imagenet / "LOC_val_solution.csv"
    first = prepare(fake_imagenet, out, val_labels=labels, **kw)
    digest = data_digest(out)
    clean = sum(1 for sp in first["splits"].values() for sh in sp["shards"]
                if not json.loads((out / f"{sh['stem']}.json").read_text())["bad"])
    moved = tmp_path / "mounted" / "elsewhere"
    shutil.copytree(fake_imagenet, moved)
    m = prepare(moved, out, val_labels=moved / "LOC_val_solution.csv", **kw)
    assert m["reused_shards"] == clean and m["source"] != first["source"]
    assert data_digest(out) == digest
    (moved / "train" / WNIDS[0] / "notes.txt").write_text("a file that is not an image")
    m = prepare(moved, out, val_labels=moved / "LOC_val_solution.csv", **kw)
    assert m["splits"]["train"]["not_images"] == 1 and data_digest(out) == digest
    before = PreparedSplit(out, "train").all_images()
    assert len(first["loader"]) == 16 and P.loader_identity() == first["loader"]
    monkeypatch.setattr(P, "loader_identity", lambda: "another crop")
    m = prepare(moved, out, val_labels=moved / "LOC_val_solution.csv", **kw)
    assert m["reused_shards"] == 0 and m["loader"] == "another crop" and data_digest(out) != digest
    assert np.array_equal(PreparedSplit(out, "train").all_images(), before)  # same pixels, rebuilt


def test_hidden_folders_are_not_classes_and_other_files_are_counted(tmp_path, fake_imagenet):
    """A notebook's .ipynb_checkpoints folder would shift every later label; hidden files are not data; a file
    without an image suffix is not read, and the manifest says how many there were (and which, up to 20)."""
    (fake_imagenet / "train" / ".ipynb_checkpoints").mkdir()
    (fake_imagenet / "train" / WNIDS[0] / ".DS_Store").write_bytes(b"x")
    (fake_imagenet / "train" / WNIDS[1] / "README.txt").write_text("notes")
    (fake_imagenet / "train" / "stray.JPEG").write_bytes((fake_imagenet / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG")
                                                       .read_bytes())  # an image beside the class folders
    m = prepare(fake_imagenet, tmp_path / "prep", resolution=16, channels=3, shard_size=4, workers=1,
                progress=False, on_bad_image="skip", val_labels=fake_imagenet / "LOC_val_solution.csv")
    assert m["classes"] == WNIDS
    assert m["splits"]["train"]["not_images"] == 2
    assert m["splits"]["train"]["not_images_first"] == [os.path.join("train", "stray.JPEG"),
                                                        os.path.join("train", WNIDS[1], "README.txt")]


def test_a_fixed_image_is_read_again(tmp_path):
    """A run that failed on an unreadable file succeeds once it is fixed, even at the same size (the shard key,
    path + label + size, does not change: the shard is rebuilt because it holds an unreadable file)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for split, n in (("train", 4), ("val", 2)):
        (root / split / "a").mkdir(parents=True)
        for i in range(n):
            _img(rng, 24, 24).save(root / split / "a" / f"{i}.png")
    victim = root / "train" / "a" / "1.png"
    good = victim.read_bytes()
    victim.write_bytes(good[:40] + bytes(len(good) - 40))  # damaged in place, same size
    out = tmp_path / "prep"
    kw = dict(resolution=16, channels=3, shard_size=8, workers=1, progress=False)
    with pytest.raises(BadImagesError, match="1.png"):
        prepare(root, out, **kw)
    victim.write_bytes(good)
    m = prepare(root, out, **kw)
    assert m["bad_files"] == 0 and m["splits"]["train"]["count"] == 4 and m["reused_shards"] == 1  # val only


def test_a_split_without_usable_images_is_an_error(tmp_path, fake_imagenet):
    for p in (fake_imagenet / "train").rglob("*"):
        if p.is_file():
            p.write_bytes(b"not an image")
    out = tmp_path / "prep"
    with pytest.raises(EmptySplitError, match="train split has no usable image .*corrupt.JPEG"):
        prepare(fake_imagenet, out, resolution=16, channels=3, progress=False, on_bad_image="skip",
                val_labels=fake_imagenet / "LOC_val_solution.csv")
    assert not (out / "manifest.json").exists()
    assert len(json.loads((out / "bad_files.json").read_text())) == 18  # every train file, listed


def test_flat_val_without_labels_is_a_clear_error(tmp_path, fake_imagenet):
    with pytest.raises(FileNotFoundError, match="val_labels"):
        prepare(fake_imagenet, tmp_path / "p", resolution=16, channels=3, progress=False, on_bad_image="skip")


def test_an_empty_split_is_an_error(tmp_path):
    root = tmp_path / "imgs"
    (root / "train" / "a").mkdir(parents=True)
    (root / "val" / "a").mkdir(parents=True)
    _img(np.random.default_rng(0), 24, 24).save(root / "val" / "a" / "0.png")
    with pytest.raises(EmptySplitError, match="train split has no image: its class folders"):
        prepare(root, tmp_path / "prep", resolution=16, channels=3, progress=False)
    assert not (tmp_path / "prep" / "manifest.json").exists()
