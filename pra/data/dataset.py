"""Reading prepared shards: memory-mapped, indexable across shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pra.io import read_json


# what to do about a damaged prepared folder (Snakemake keeps a job whose manifest.json exists: it has to be told)
REPREPARE = ("prepare it again: `snakemake --forcerun prepare ...` (or `python -m pra prepare`), which rebuilds "
             "the missing, truncated or stale shards and reuses the intact ones; the jobs that depend on the data "
             "then run again (docs/configuration.md, \"After a crash\")")


class CorruptDataError(RuntimeError):
    """Prepared shards that do not match their manifest."""


class PreparedSplit:
    """Images (uint8 [H, W, C]) and labels of one split; `take(idx)` gathers across shards."""

    def __init__(self, data_dir: str | Path, split: str):
        """data_dir: the prepared folder, or its manifest.json."""
        data_dir = Path(data_dir)
        if data_dir.name == "manifest.json":
            data_dir = data_dir.parent
        if not (data_dir / "manifest.json").exists():
            raise FileNotFoundError(f"{data_dir} has no manifest.json: run `prepare` (an interrupted prepare "
                                    "resumes where it stopped)")
        self.manifest = read_json(data_dir / "manifest.json")
        if split not in self.manifest["splits"]:
            raise KeyError(f"{data_dir}: no split {split!r}")
        info = self.manifest["splits"][split]
        shards = info["shards"]
        self._images, labels = [], []
        for s in shards:
            images, labs = (self._load(data_dir / f"{s['stem']}.{kind}.npy", kind == "images")
                            for kind in ("images", "labels"))
            if not (len(images) == len(labs) == s["count"]):
                raise CorruptDataError(f"{data_dir}: shard {s['stem']} holds {len(images)} images and {len(labs)} "
                                       f"labels but manifest.json says {s['count']}: the prepared data is "
                                       "corrupt or mixed with another run's; delete the folder and prepare it again (`snakemake "
                                       "--forcerun prepare ...`)")
            self._images.append(images)
            labels.append(labs)
        self.labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        if len(self.labels) != info["count"]:
            raise CorruptDataError(f"{data_dir}: split {split!r} has {len(self.labels)} images in its shards but "
                                   f"manifest.json says {info['count']}; " + REPREPARE)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise CorruptDataError(f"{data_dir}: split {split!r} has labels outside [0, {self.num_classes}); "
                                   + REPREPARE)
        self._offsets = np.cumsum([0] + [len(x) for x in self._images])

    @staticmethod
    def _load(path: Path, mmap: bool) -> np.ndarray:
        if not path.exists():
            raise CorruptDataError(f"{path}: a shard listed in manifest.json is missing; " + REPREPARE)
        try:
            return np.load(path, mmap_mode="r" if mmap else None)
        except (ValueError, OSError, EOFError) as e:
            raise CorruptDataError(f"{path}: unreadable shard ({e}); " + REPREPARE) from e

    @property
    def num_classes(self) -> int:
        return self.manifest["num_classes"]

    @property
    def resolution(self) -> int:
        return self.manifest["resolution"]

    @property
    def channels(self) -> int:
        return self.manifest["channels"]

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def take(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        shard = np.searchsorted(self._offsets, idx, side="right") - 1
        out = np.empty((len(idx), self.resolution, self.resolution, self.channels), dtype=np.uint8)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._images[s][idx[sel] - self._offsets[s]]
        return out

    def all_images(self) -> np.ndarray:
        return self.take(np.arange(len(self)))

    def sha256(self) -> str:
        """Digest of the split's content (images and labels in order, shard by shard): equal wherever the same
        images were prepared, whatever the folder or machine."""
        import hashlib

        h = hashlib.sha256()
        h.update(f"{self.resolution}x{self.resolution}x{self.channels}:{len(self)}".encode())
        for images in self._images:
            for i in range(0, len(images), 4096):
                h.update(np.ascontiguousarray(images[i:i + 4096]).tobytes())
        h.update(self.labels.astype("<i8").tobytes())
        return h.hexdigest()


def data_sha256(data_dir: str | Path, splits=("train", "val")) -> str:
    """Digest of the content of a prepared folder's splits (PreparedSplit.sha256)."""
    import hashlib

    h = hashlib.sha256()
    for split in splits:
        h.update(f"{split}:{PreparedSplit(data_dir, split).sha256()}".encode())
    return h.hexdigest()


def subsample(n: int, k: int, seed: int = 0) -> np.ndarray:
    """k sorted indices out of n (all when k >= n), fixed by seed."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
