"""Reading prepared shards: memory-mapped, indexable across shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pra.io import read_json


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
        shards = self.manifest["splits"][split]["shards"]
        self._images = [np.load(data_dir / f"{s['stem']}.images.npy", mmap_mode="r") for s in shards]
        self.labels = np.concatenate([np.load(data_dir / f"{s['stem']}.labels.npy") for s in shards]) \
            if shards else np.zeros(0, dtype=np.int64)
        self._offsets = np.cumsum([0] + [len(x) for x in self._images])

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
