"""`prepare`: raw image folder -> center-cropped uint8 shards + class index + manifest.

Output folder layout (what pra.data.dataset reads):
  manifest.json                  resolution, channels, classes, per-split counts/shards, bad files
  {split}-{k:05d}.images.npy     uint8 [n, H, W, C], memory-mappable
  {split}-{k:05d}.labels.npy     int64 [n]
  bad_files.json                 unreadable/truncated inputs and the error of each
"""
from __future__ import annotations

import multiprocessing as mp
from functools import partial
from pathlib import Path

import numpy as np

from pra.data.imagefolder import class_names, list_split, load_image
from pra.io import save_npy, write_json

SPLITS = ("train", "val")


def _load(item, resolution, channels):
    path, label = item
    try:
        return load_image(path, resolution, channels), label, None
    except Exception as e:  # reported, never silently dropped
        return None, label, f"{type(e).__name__}: {e}"


class BadImagesError(RuntimeError):
    pass


def prepare(root: str | Path, out_dir: str | Path, *, resolution: int, channels: int, shard_size: int = 8192,
            workers: int = 1, on_bad_image: str = "fail", progress: bool = True) -> dict:
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = class_names(root)
    manifest = {"format": 1, "source": str(root), "resolution": resolution, "channels": channels,
                "classes": classes, "num_classes": len(classes), "splits": {}}
    bad: list[dict] = []
    fn = partial(_load, resolution=resolution, channels=channels)
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for split in SPLITS:
            items = list_split(root, split, classes)
            shards, counts = [], np.zeros(len(classes), dtype=np.int64)
            it = pool.imap(fn, items, chunksize=64) if pool else map(fn, items)
            buf_x, buf_y = [], []

            def flush():
                k = len(shards)
                stem = f"{split}-{k:05d}"
                save_npy(out_dir / f"{stem}.images.npy", np.stack(buf_x))
                save_npy(out_dir / f"{stem}.labels.npy", np.asarray(buf_y, dtype=np.int64))
                shards.append({"stem": stem, "count": len(buf_y)})
                buf_x.clear()
                buf_y.clear()

            for (path, _), (arr, label, err) in tqdm(zip(items, it), total=len(items), desc=f"prepare {split}",
                                                    disable=not progress, mininterval=2.0):
                if err is not None:
                    bad.append({"path": path, "split": split, "error": err})
                    continue
                buf_x.append(arr)
                buf_y.append(label)
                counts[label] += 1
                if len(buf_y) == shard_size:
                    flush()
            if buf_y:
                flush()
            manifest["splits"][split] = {"count": int(counts.sum()), "per_class": counts.tolist(), "shards": shards}
    finally:
        if pool:
            pool.close()
            pool.join()
    write_json(out_dir / "bad_files.json", bad)
    manifest["bad_files"] = len(bad)
    if bad and on_bad_image == "fail":
        names = ", ".join(b["path"] for b in bad[:10])
        raise BadImagesError(f"{len(bad)} unreadable images (listed in {out_dir / 'bad_files.json'}): {names}"
                             " -- set data.on_bad_image: skip to continue without them")
    write_json(out_dir / "manifest.json", manifest)
    return manifest
