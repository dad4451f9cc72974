"""`sample`: class-balanced, seeded generation from a trained model into an ADM-style npz.

Labels are balanced (per_class of each class). They are cut into fixed batches; batch b draws its
noise from a generator seeded by (seed, b), so the samples do not depend on how batches are spread
over shards, jobs or GPUs: shard k of n generates batches k, k+n, ..., and `gather` interleaves the
shards back into batch order, then shuffles them by a fixed permutation (numpy's default_rng of the sampling
seed): ADM's evaluator computes the Inception Score on consecutive splits of 5,000 images, which in label order
would each hold a tenth of the classes. Exactly N = per_class x classes samples are made, so no over-sampling
and trimming is needed. Output: `arr_0` uint8 [N, H, W, C] (the ADM evaluator's layout) and `labels`.
"""
from __future__ import annotations

import time
import json
from pathlib import Path

import numpy as np
import torch

from pra.config import SampleConfig, SpeedConfig
from pra.io import atomic_path, write_json
from pra.model.patches import to_uint8, unpatchify
from pra.flow import make_flow
from pra.runtime import generator, resolve_device, set_threads
from pra.rollout import SamplerSettings, balanced_labels, rollout
from pra.checkpoint import load_trained


class NonFiniteSamplesError(RuntimeError):
    pass


def batch_seed(seed: int, batch_index: int) -> int:
    return (int(seed) * 1_000_003 + int(batch_index)) % (2 ** 63)


@torch.no_grad()
def generate(net, flow, labels: torch.Tensor, settings: SamplerSettings, *, seed: int, batch_size: int,
             device, shard: int = 0, num_shards: int = 1, use_cache: bool = True,
             ode=None) -> tuple[np.ndarray, np.ndarray]:
    """ode: the head ODE solver shared by every batch (pra.speed.head_ode); default eager."""
    g = net.geometry
    images, out_labels, batches = [], [], []
    n_batches = (len(labels) + batch_size - 1) // batch_size
    for b in range(shard, n_batches, num_shards):
        lab = labels[b * batch_size:(b + 1) * batch_size].to(device)
        r = rollout(net, flow, lab, settings, generator(batch_seed(seed, b), device), use_cache=use_cache,
                    ode=ode)
        bad = int((~torch.isfinite(r.patches)).flatten(1).any(1).sum())
        if bad:  # to_uint8 would turn them into black or white pixels and the metrics would score those
            raise NonFiniteSamplesError(f"sampling batch {b}: {bad} of {len(lab)} samples have non-finite pixels "
                                        f"(guidance {settings.cfg_scale:g}; the network's precision and the "
                                        "guidance are the usual causes); nothing was written")
        images.append(to_uint8(unpatchify(r.patches.float(), g.patch_size, g.channels)).cpu().numpy())
        out_labels.append(lab.cpu().numpy())
        batches.append(np.full(len(lab), b, dtype=np.int64))
    if not images:
        return (np.zeros((0, g.resolution, g.resolution, g.channels), np.uint8), np.zeros(0, np.int64),
                np.zeros(0, np.int64))
    return np.concatenate(images), np.concatenate(out_labels).astype(np.int64), np.concatenate(batches)


def sample_to_npz(model_path: str | Path, out_path: str | Path, s: SampleConfig, *, device: str = "auto",
                  threads: int = 1, shard: int = 0, num_shards: int = 1, speed: SpeedConfig = SpeedConfig(),
                  code_hash: str | None = None) -> dict:
    """One shard of the samples. Under torchrun the shard's batches are split over the ranks (each rank
    handles every world-th batch of the shard) and rank 0 writes the file. `speed`: the sampling network's
    precision and the head ODE's CUDA graphs (pra.speed)."""
    from pra import distributed as D
    from pra import speed as S

    set_threads(threads)
    dev = resolve_device(device)
    dinfo = D.init_from_env(dev.type)
    net, cfg, meta = load_trained(model_path, dev, use_ema=s.use_ema)
    net = net.to(S.sampling_dtype(speed, dev))
    flow = make_flow(cfg.model, net.latent)
    settings = SamplerSettings.from_config(s)
    ode = S.head_ode(flow, net, settings, speed, dev)
    labels = balanced_labels(net.geometry.num_classes, s.per_class)
    t0 = time.time()
    images, labs, batches = generate(net, flow, labels, settings, seed=s.seed, batch_size=s.batch_size,
                                     device=dev, shard=shard + num_shards * dinfo.rank,
                                     num_shards=num_shards * dinfo.world, ode=ode)
    if dinfo.enabled:
        parts = [None] * dinfo.world
        D.dist.all_gather_object(parts, (images, labs, batches))
        images, labs, batches = (np.concatenate([p[i] for p in parts]) for i in range(3))
        if not dinfo.is_main:
            D.shutdown()
            return {"count": int(len(labs)), "seconds": time.time() - t0}
    seconds = time.time() - t0
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, arr_0=images, labels=labs, batch=batches)
    info = {"model": str(model_path), "count": int(len(labs)), "expected_total": int(len(labels)),
            "seconds": seconds,
            "sampling": {**settings.__dict__, "cfg_interval": list(settings.cfg_interval), "use_ema": s.use_ema,
                         "seed": s.seed, "per_class": s.per_class, "batch_size": s.batch_size},
            "speed": S.describe(speed, dev), "device": str(dev),
            "shard": shard, "num_shards": num_shards, "processes": dinfo.world, "code_hash": code_hash,
            **{k: meta[k] for k in ("scale", "method", "seed", "step")}}
    write_json(Path(out_path).with_suffix(".json"), info)
    if dinfo.enabled:
        D.shutdown()
    return info


def gather(shard_paths: list[str | Path], out_path: str | Path, *, png_dir: str | Path | None = None) -> dict:
    """Concatenate shards into one npz in a fixed shuffled order (the module's docstring); checks the count, that
    nothing is missing and that the shards agree."""
    from pra.io import read_json

    parts = [np.load(p) for p in shard_paths]
    infos = [read_json(Path(p).with_suffix(".json")) for p in shard_paths]
    images = np.concatenate([p["arr_0"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    batches = np.concatenate([p["batch"] for p in parts])
    order = np.argsort(batches, kind="stable")  # batch order; the images are reordered once, below
    labels = labels[order]
    expected = infos[0]["expected_total"]
    for key in ("model", "step", "sampling", "speed", "code_hash", "num_shards", "expected_total"):
        seen = {json.dumps(i.get(key), sort_keys=True) for i in infos}
        if len(seen) > 1:
            raise RuntimeError(f"gather: the shards disagree on {key!r} ({sorted(seen)}): they were drawn by "
                               "different models, settings or code; rerun the sample jobs")
    if len(labels) != expected or sorted({i["shard"] for i in infos}) != list(range(infos[0]["num_shards"])):
        raise RuntimeError(f"gather: {len(labels)} samples from shards {[i['shard'] for i in infos]}, "
                           f"expected {expected} from {infos[0]['num_shards']} shards")
    seed = infos[0]["sampling"]["seed"]
    shuffle = np.random.default_rng(seed).permutation(len(labels))
    images, labels = images[order[shuffle]], labels[shuffle]  # one copy of the images (~10 GB for FID-50K at 256)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, arr_0=images, labels=labels)
    info = {**{k: v for k, v in infos[0].items() if k not in ("shard", "seconds", "count")},
            "count": int(len(labels)), "seconds": float(sum(i["seconds"] for i in infos)),
            "per_class": np.bincount(labels).tolist(),
            "order": f"batch order shuffled by numpy.random.default_rng({seed}).permutation({len(labels)})"}
    if png_dir:
        from PIL import Image

        png_dir = Path(png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for i, (im, c) in enumerate(zip(images, labels)):
            Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im).save(png_dir / f"{i:06d}_{c}.png")
        info["png_dir"] = str(png_dir)
    write_json(Path(out_path).with_suffix(".json"), info)
    return info


# ---- the command-line job ----------------------------------------------------------------------
def sample_job(args):
    cfg = args.cfg
    s = cfg.sample
    if args.guidance:  # the scale the sweep chose (guidance.json of pra.evaluate.guidance)
        import dataclasses

        s = dataclasses.replace(s, cfg_scale=float(json.loads(Path(args.guidance).read_text())["chosen"]))
    info = sample_to_npz(args.model, args.out, s, device=cfg.device, threads=args.threads,
                         shard=args.shard, num_shards=args.num_shards, speed=cfg.speed, code_hash=args.code_hash)
    print(json.dumps({k: info[k] for k in ("count", "seconds")}))


def gather_job(args):
    info = gather(args.shards, args.out, png_dir=args.png_dir)
    print(json.dumps({"count": info["count"]}))
