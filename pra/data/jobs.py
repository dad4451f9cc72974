"""The data jobs of the command line: export an embedded dataset, prepare an image folder into shards."""
from __future__ import annotations

import json


def export(args):
    from pra.data.embedded import export

    cfg = args.cfg
    counts = export(cfg.data.source, args.out, cfg.data.val_fraction, cfg.data.split_seed)
    print(json.dumps(counts))


def prepare(args):
    from pra.data.prepare import prepare

    cfg = args.cfg
    d = cfg.data
    workers = d.workers or args.threads
    m = prepare(args.root or d.root, args.out, resolution=d.resolution, channels=d.channels,
                shard_size=d.shard_size, workers=workers, on_bad_image=d.on_bad_image,
                val_labels=d.val_labels or None)
    print(json.dumps({s: v["count"] for s, v in m["splits"].items()}))
