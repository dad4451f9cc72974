"""`prepare`: raw image folder -> center-cropped uint8 shards + class index + manifest.

Output folder layout (what pra.data.dataset reads):
  manifest.json                  resolution, channels, classes, per-split counts/shards, bad-file count
  classes.json                   class index: folder name (ImageNet wnid) -> label
  {split}-{k:05d}.images.npy     uint8 [n, H, W, C], memory-mappable
  {split}-{k:05d}.labels.npy     int64 [n]
  {split}-{k:05d}.json           what the shard was built from (file list digest, settings, bad files)
  bad_files.json                 unreadable/truncated inputs and the error of each

manifest.json is written last: its presence means the folder is complete. Shards are written
atomically and reused by a re-run when their inputs (path, label and size of every file: not the
modification time, which a DVC checkout resets; paths relative to the folder, so the same folder mounted
elsewhere keeps its shards), settings, loading code and Pillow version are unchanged and their arrays read back
whole, so an interrupted prepare resumes at the first unfinished shard and a changed crop is applied to every
shard. A shard with unreadable files is
never reused: a re-run reads them again (after they were fixed). A file replaced in place by another of
the same size is not noticed: delete the output folder after editing images in place. A split without a
single usable image is an error. Memory does not grow with the number of images: one shard is held at a
time.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from functools import partial
from pathlib import Path

import numpy as np

from pra.data.imagefolder import class_names, list_split, load_image
from pra.io import read_json, save_npy, write_json

SPLITS = ("train", "val")
FORMAT = 2


def _load(item, resolution, channels):
    path, label = item
    try:
        return load_image(path, resolution, channels), label, None
    except Exception as e:  # reported, never silently dropped
        return None, label, f"{type(e).__name__}: {e}"


class BadImagesError(RuntimeError):
    pass


class EmptySplitError(RuntimeError):
    pass


LOADING_FUNCTIONS = ("load_image", "center_crop_arr")  # pra.data.imagefolder: what turns a file into pixels


def loader_identity() -> str:
    """What decides a shard's pixels besides its files: the loading and cropping functions (their syntax trees,
    without docstrings; not the module's listing or messages) and Pillow's version, whose resampling they call."""
    import ast

    import PIL

    from pra.codehash import normalised
    from pra.data import imagefolder

    tree = ast.parse(Path(imagefolder.__file__).read_text())
    defs = {n.name: normalised(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
    code = "\0".join(defs[name] for name in LOADING_FUNCTIONS)
    return hashlib.sha256(f"{code}\0{PIL.__version__}".encode()).hexdigest()[:16]


def _shard_key(items, root: str | Path, resolution: int, channels: int, loader: str) -> str:
    h = hashlib.sha256(json.dumps({"r": resolution, "c": channels, "format": FORMAT, "loader": loader}).encode())
    for path, label in items:
        st = os.stat(path)
        rel = os.path.relpath(path, root)  # the same folder mounted elsewhere keeps its shards
        h.update(f"{rel}\0{label}\0{st.st_size}\n".encode())  # not mtime: a DVC checkout resets it
    return h.hexdigest()


def _shard_done(out_dir: Path, stem: str, key: str) -> dict | None:
    meta_path = out_dir / f"{stem}.json"
    if not meta_path.exists():
        return None
    meta = read_json(meta_path)
    if meta.get("key") != key or meta.get("bad"):
        return None
    try:
        n = {len(np.load(out_dir / f"{stem}.{kind}.npy", mmap_mode="r")) for kind in ("images", "labels")}
    except (OSError, ValueError, EOFError):  # missing or truncated
        return None
    return meta if n == {meta.get("count")} else None


def prepare(root: str | Path, out_dir: str | Path, *, resolution: int, channels: int, shard_size: int = 8192,
            workers: int = 1, on_bad_image: str = "fail", progress: bool = True,
            val_labels: str | Path | None = None) -> dict:
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until written again at the end
    classes = class_names(root)
    write_json(out_dir / "classes.json", {c: i for i, c in enumerate(classes)})
    manifest = {"format": FORMAT, "source": str(root), "resolution": resolution, "channels": channels,
                "classes": classes, "num_classes": len(classes), "splits": {},
                "preprocessing": "ADM center crop: BOX halving while short side >= 2x, BICUBIC resize, center crop"}
    loader = loader_identity()
    manifest["loader"] = loader
    bad: list[dict] = []
    fn = partial(_load, resolution=resolution, channels=channels)
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None
    reused = 0
    try:
        for split in SPLITS:
            skipped: list[str] = []
            items = list_split(root, split, classes, val_labels=val_labels if split == "val" else None,
                               skipped=skipped)
            shards, counts = [], np.zeros(len(classes), dtype=np.int64)
            chunks = [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
            bar = tqdm(total=len(items), desc=f"prepare {split}", disable=not progress, mininterval=2.0,
                       unit="img")
            for k, chunk in enumerate(chunks):
                stem = f"{split}-{k:05d}"
                key = _shard_key(chunk, root, resolution, channels, loader)
                meta = _shard_done(out_dir, stem, key)
                if meta is None:
                    it = pool.imap(fn, chunk, chunksize=max(1, min(64, len(chunk) // (4 * workers) or 1))) \
                        if pool else map(fn, chunk)
                    xs = np.empty((len(chunk), resolution, resolution, channels), dtype=np.uint8)
                    ys, shard_bad, n = [], [], 0
                    for (path, _), (arr, label, err) in zip(chunk, it):
                        bar.update(1)
                        if err is not None:
                            shard_bad.append({"path": path, "split": split, "error": err})
                            continue
                        xs[n] = arr
                        ys.append(label)
                        n += 1
                    save_npy(out_dir / f"{stem}.images.npy", xs[:n])
                    save_npy(out_dir / f"{stem}.labels.npy", np.asarray(ys, dtype=np.int64))
                    meta = {"key": key, "count": n, "inputs": len(chunk), "bad": shard_bad,
                            "per_class": np.bincount(np.asarray(ys, dtype=np.int64),
                                                     minlength=len(classes)).tolist()}
                    write_json(out_dir / f"{stem}.json", meta)
                else:
                    reused += 1
                    bar.update(len(chunk))
                bad.extend(meta["bad"])
                counts += np.asarray(meta["per_class"], dtype=np.int64)
                shards.append({"stem": stem, "count": meta["count"], "key": key})
            bar.close()
            for old in out_dir.glob(f"{split}-*.json"):  # shards of an earlier, longer file list
                if int(old.stem.split("-")[1]) >= len(chunks):
                    for suffix in (".json", ".images.npy", ".labels.npy"):
                        (out_dir / f"{old.stem}{suffix}").unlink(missing_ok=True)
            if not counts.sum():
                write_json(out_dir / "bad_files.json", bad)
                names = ", ".join(b["path"] for b in bad if b["split"] == split)[:1000]
                raise EmptySplitError(f"{root}: the {split} split has no usable image ({len(items)} files, every "
                                      f"one unreadable{': ' + names if names else ''}; listed in "
                                      f"{out_dir / 'bad_files.json'})" if items else
                                      f"{root}: the {split} split has no image: its class folders under "
                                      f"{Path(root) / split} are empty")
            manifest["splits"][split] = {"count": int(counts.sum()), "inputs": len(items),
                                         "per_class": counts.tolist(), "shards": shards,
                                         "not_images": len(skipped),
                                         "not_images_first": [os.path.relpath(p, root) for p in skipped[:20]]}
            if skipped:
                print(f"prepare {split}: {len(skipped)} files without an image suffix were not read (first: "
                      f"{skipped[0]}; listed in manifest.json)", flush=True)
    finally:
        if pool:
            pool.close()
            pool.join()
    write_json(out_dir / "bad_files.json", bad)
    manifest["bad_files"] = len(bad)
    manifest["reused_shards"] = reused
    if bad and on_bad_image == "fail":
        names = ", ".join(b["path"] for b in bad[:10])
        raise BadImagesError(f"{len(bad)} unreadable images (listed in {out_dir / 'bad_files.json'}): {names}"
                             " -- fix or remove them, or set data.on_bad_image: skip to continue without them")
    write_json(out_dir / "manifest.json", manifest)
    return manifest
