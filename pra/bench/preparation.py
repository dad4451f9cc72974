"""`python -m pra bench-prepare`: the preprocessing of ImageNet-like JPEGs (pra.data.prepare) against bare PIL,
throughput and peak memory, measured side by side; writes benchmarks/prepare.{json,md}."""
from __future__ import annotations

import json
import time
from pathlib import Path

from pra.io import write_json


def make_fake_imagenet(root: Path, n: int, classes: int = 4, size=(500, 375), seed: int = 0) -> Path:
    """JPEGs of ImageNet's typical size with smooth random content (quality 90)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / "train" / f"n{i % classes:08d}"
        d.mkdir(parents=True, exist_ok=True)
        low = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize(size, Image.BICUBIC)
        noise = rng.integers(-12, 13, (size[1], size[0], 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        img.save(d / f"img_{i:06d}.JPEG", quality=90)
    (root / "val").mkdir(exist_ok=True)
    return root


def bench_prepare(out_dir: str | Path, *, n: int = 600, resolution: int = 256, workers: int = 2,
                  reps: int = 2) -> dict:
    """`prepare` vs bare PIL decode + ADM crop/resize of the same files with the same processes."""
    import multiprocessing as mp
    import shutil
    import tempfile
    from functools import partial

    from pra.data.imagefolder import class_names, list_split, load_image
    from pra.data.prepare import prepare

    tmp = Path(tempfile.mkdtemp(prefix="pra-bench-prep-"))
    try:
        root = make_fake_imagenet(tmp / "raw", n)
        files = [p for p, _ in list_split(root, "train", class_names(root))]
        times = {"bare": [], "prepare": []}
        for _ in range(reps):
            with mp.get_context("spawn").Pool(workers) as pool:
                t = time.perf_counter()
                list(pool.imap(partial(load_image, resolution=resolution, channels=3), files, chunksize=16))
                times["bare"].append(time.perf_counter() - t)
            shutil.rmtree(tmp / "prep", ignore_errors=True)
            t = time.perf_counter()
            prepare(root, tmp / "prep", resolution=resolution, channels=3, shard_size=256, workers=workers,
                    progress=False)
            times["prepare"].append(time.perf_counter() - t)
        best = {k: min(v) for k, v in times.items()}
        res = {"images": n, "resolution": resolution, "workers": workers, "source_size": [500, 375],
               "seconds": best, "images_per_second": {k: n / v for k, v in best.items()},
               "prepare_over_bare": best["prepare"] / best["bare"], "target": ["<=", 1.3]}
        # streaming: peak resident memory of a fresh `prepare` process (and of its largest worker) for n
        # and 4n images with the same shard size; it must not grow with the number of images
        make_fake_imagenet(tmp / "raw4", 4 * n, seed=1)
        mem, shard = {}, 256
        for label, src in (("n", root), ("4n", tmp / "raw4")):
            mem[label] = _prepare_peak_rss(src, tmp / f"prep-{label}", resolution, workers, shard_size=shard)
        res["memory"] = {"images": {"n": n, "4n": 4 * n}, "shard_size": shard, "peak_rss_mib": mem,
                         "ratio_4n_over_n": {k: mem["4n"][k] / mem["n"][k] for k in mem["n"]}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out_dir = Path(out_dir)
    write_json(out_dir / "prepare.json", res)
    ok = res["prepare_over_bare"] <= 1.3
    (out_dir / "prepare.md").write_text(
        "# Preprocessing benchmark (measured by `python -m pra bench-prepare`)\n\n"
        f"{n} synthetic 500x375 JPEGs (quality 90) -> {resolution}x{resolution}, {workers} processes, best of "
        f"{reps}. Bare: PIL decode + ADM center crop/resize in a process pool, results discarded. Prepare: the "
        "pipeline's `prepare` (the same decode/crop plus shards, manifest, bad-file report; process start-up "
        "included in both).\n\n"
        "| | seconds | images/s |\n|---|---|---|\n"
        f"| bare PIL | {best['bare']:.2f} | {n / best['bare']:.0f} |\n"
        f"| prepare | {best['prepare']:.2f} | {n / best['prepare']:.0f} |\n\n"
        f"prepare / bare = {res['prepare_over_bare']:.2f}: {'met' if ok else 'NOT met'} (target <= 1.3)\n\n"
        "## Memory: does preprocessing stream?\n\n"
        f"Peak resident memory of a fresh `prepare` process and of its largest worker (getrusage), shard size "
        f"{res['memory']['shard_size']}, for {n} and {4 * n} images:\n\n"
        "| | main process | largest worker |\n|---|---|---|\n"
        + "".join(f"| {res['memory']['images'][k]} images | {v['main']:.0f} MiB | {v['worker']:.0f} MiB |\n"
                  for k, v in res["memory"]["peak_rss_mib"].items())
        + f"\n4x the images: main x{res['memory']['ratio_4n_over_n']['main']:.2f}, worker "
          f"x{res['memory']['ratio_4n_over_n']['worker']:.2f} "
          f"({'does not grow' if max(res['memory']['ratio_4n_over_n'].values()) <= 1.1 else 'GROWS'}"
          " beyond 10%).\n")
    return res


def _prepare_peak_rss(src: Path, out: Path, resolution: int, workers: int, shard_size: int) -> dict:
    """Run `prepare` in a fresh interpreter; its own and its largest child's peak RSS in MiB."""
    import subprocess
    import sys

    code = ("import json, resource; from pra.data.prepare import prepare; "
            f"prepare({str(src)!r}, {str(out)!r}, resolution={resolution}, channels=3, shard_size={shard_size}, "
            f"workers={workers}, progress=False); "
            "print(json.dumps({'main': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
            "'worker': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---- the command-line job ----------------------------------------------------------------------
def bench_prepare_job(args):
    bench_prepare(args.out, n=args.images, resolution=args.resolution, workers=args.workers)
    print((Path(args.out) / "prepare.md").read_text())
