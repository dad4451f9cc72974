"""`python -m pra estimate`: training compute of an experiment's scales, and GPU-hours at a stated MFU.

FLOPs of one training step per image are counted by torch.utils.flop_counter on a real forward and
backward at batch 1 (CPU), attention included (pra.flops), for the experiment's method and geometry.
GPU-hours divide them by a peak throughput times a model-FLOP utilisation. With the GPU benchmark
(benchmarks/gpu.json, written by `python -m pra bench` on CUDA) every scale is estimated on its card (its
nominal peak), at the MFU the benchmark measured for the scale's training iteration (in the mode a CUDA job
runs) or, for a scale it did not measure, at the lowest MFU it measured for any scale (never above a
measurement); without it, on the assumed card at the assumed MFU. Each line says which.

Two things the single-GPU benchmark does not see are stated, not hidden: its per-GPU batch (the experiment's
jobs run batch_size / GPUs per GPU), and the gradient all-reduce of data-parallel training, added as a model:
a ring all-reduce moves 2 (G - 1) / G times the fp32 gradients per GPU and step, at an assumed bus bandwidth
(intra-node for one node, inter-node otherwise), counted without overlap with compute (an upper bound).
GPU-hours are estimates either way.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pra.config import ExperimentConfig
from pra.model.network import Geometry, count_parameters
from pra.noise import Noise
from pra.runtime import generator
from pra.checkpoint import build_network
from pra.step import TrainStep


def flops_per_image(cfg: ExperimentConfig, scale: str, method: str, geom: Geometry) -> int:
    """Forward and backward FLOPs of the training step per image, attention included (pra.flops)."""
    from pra.flops import counter

    net = build_network(cfg, scale, method, geom)
    step = TrainStep(cfg.replace(device="cpu"), net, method, torch.device("cpu"))
    x = torch.rand(1, geom.num_tokens, geom.patch_dim) * 2 - 1
    y = torch.zeros(1, dtype=torch.long)
    with counter() as fc:
        loss, _ = step.loss(x, y, Noise(generator(0)))
        loss.backward()
    return fc.get_total_flops()


def job_mode(cfg: ExperimentConfig) -> str:
    """The GPU benchmark's mode that the experiment's CUDA jobs run with its speed section (pra.bench.gpu)."""
    from pra import speed as S

    cuda = torch.device("cuda")
    if not S.compiles(cfg.speed, cuda):
        return "eager"
    fast = (S.fused_optimizer(cfg.speed, cuda), S.foreach_ema(cfg.speed, cuda), S.deferred_checks(cfg.speed, cuda))
    return "fast" if all(fast) else "compiled"


def measured_mfu(bench: dict, scale: str, method: str, mode: str = "fast") -> float | None:
    """The MFU of `scale`'s training in a GPU benchmark (pra.bench.gpu) in `mode` (a benchmark from before the
    modes 'fast' had 'compiled' and 'eager' only: 'fast' reads its 'compiled'), for `method` when it was
    measured (latent_tf and pra are), else PRA's."""
    for t in bench.get("training", []):
        if t["scale"] != scale:
            continue
        modes = t.get("modes", {})
        row = modes.get(mode) or (modes.get("compiled") if mode == "fast" and "fast" not in modes else None)
        mfu = (row or {}).get("mfu")
        if mfu:
            return mfu.get(method, mfu.get("pra"))
    return None


def benchmark_batch(bench: dict, scale: str) -> int | None:
    """The per-GPU batch the benchmark timed `scale` at (or its first scale's, for a scale it did not time)."""
    rows = bench.get("training") or [{}]
    return next((t.get("batch") for t in rows if t.get("scale") == scale), rows[0].get("batch"))


def lowest_measured_mfu(bench: dict, method: str, mode: str = "fast") -> tuple[float, str] | None:
    """The lowest training MFU the benchmark measured in `mode` for any scale (and that scale)."""
    found = [(measured_mfu(bench, t["scale"], method, mode), t["scale"]) for t in bench.get("training", [])]
    found = [f for f in found if f[0]]
    return min(found) if found else None


def allreduce_seconds(params: int, gpus: int, nodes: int, *, intra_gbps: float, inter_gbps: float) -> float:
    """Seconds per step of a ring all-reduce of fp32 gradients over `gpus` GPUs (a model, see the module)."""
    if gpus <= 1:
        return 0.0
    volume = 2 * (gpus - 1) / gpus * params * 4
    return volume / ((inter_gbps if nodes > 1 else intra_gbps) * 1e9)


def estimate(cfg: ExperimentConfig, num_classes: int, *, peak_tflops: float = 312.0, mfu: float | None = None,
             bench: dict | None = None, intra_gbps: float = 150.0, inter_gbps: float = 25.0) -> dict:
    """mfu None: the GPU benchmark's measured MFU where `bench` has the scale, else its lowest measured MFU, else
    0.4 (assumed). intra_gbps / inter_gbps: the all-reduce model's bus bandwidth within a node and across
    nodes (GB/s per GPU, assumed)."""
    geom = Geometry(cfg.data.resolution, cfg.data.channels, cfg.model.patch_size, num_classes)
    card = (bench or {}).get("machine", {})
    use_bench = mfu is None and bench is not None and bool(card.get("nominal_bf16_dense_flops"))
    out = {"assumptions": {"peak_tflops": peak_tflops, "mfu": 0.4 if mfu is None else mfu,
                           "note": f"peak: {peak_tflops:g} TFLOP/s (default: A100 bf16 dense); MFU is assumed, "
                                   "not measured"},
           "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "scales": {},
           "allreduce_model": {"intra_node_GBps": intra_gbps, "inter_node_GBps": inter_gbps,
                               "note": "ring all-reduce of fp32 gradients, 2(G-1)/G x 4 bytes x params per GPU and "
                                       "step, not overlapped with compute (an upper bound); bandwidths assumed"}}
    if use_bench:
        g = bench.get("geometry", {})
        out["measured"] = {"device": card["device"], "peak_tflops": card["nominal_bf16_dense_flops"] / 1e12,
                           "note": f"MFU of the training iteration measured by `python -m pra bench` on "
                                   f"{card['device']} at {g.get('resolution')}px/{g.get('tokens')} tokens (per-GPU "
                                   "batch per scale below); every scale is estimated on that card, those it did "
                                   "not measure at the lowest MFU it measured"}
    mode = job_mode(cfg)
    out["benchmark_mode"] = mode
    for scale in cfg.scales:
        bench_batch = benchmark_batch(bench, scale) if use_bench else None
        net = build_network(cfg, scale, cfg.methods[0], geom)
        params = count_parameters(net)
        nodes = cfg.resource(scale, "train_nodes")
        gpus = max(cfg.resource(scale, "train_gpus"), 1) * nodes
        comm = allreduce_seconds(params, gpus, nodes, intra_gbps=intra_gbps, inter_gbps=inter_gbps)
        per_method = {}
        for method in cfg.methods:
            f = flops_per_image(cfg, scale, method, geom)
            total = f * cfg.train.batch_size * cfg.train.steps
            peak = out["measured"]["peak_tflops"] if use_bench else peak_tflops
            m_mfu = measured_mfu(bench, scale, method, mode) if use_bench else None
            low = lowest_measured_mfu(bench, method, mode) if use_bench and not m_mfu else None
            if m_mfu:
                u, source = m_mfu, "measured"
            elif low:
                u, source = low[0], f"lowest measured (of {low[1]})"
            else:
                u, source = out["assumptions"]["mfu"], "assumed"
            compute = total / (peak * 1e12 * u) / 3600
            allreduce = comm * cfg.train.steps * gpus / 3600
            per_method[method] = {"flops_per_image": f, "total_flops": total, "mfu": u, "mfu_source": source,
                                  "peak_tflops": peak, "gpu_hours_compute": compute,
                                  "gpu_hours_allreduce": allreduce, "gpu_hours": compute + allreduce,
                                  "wall_hours": (compute + allreduce) / gpus}
        out["scales"][scale] = {"params": params, "methods": per_method,
                                "train_gpus": cfg.resource(scale, "train_gpus"), "train_nodes": nodes,
                                "gpus_per_job": gpus, "per_gpu_batch": cfg.train.batch_size / gpus,
                                "benchmark_per_gpu_batch": bench_batch, "allreduce_seconds_per_step": comm,
                                "batch_differs_from_benchmark": bool(bench_batch) and
                                bench_batch != cfg.train.batch_size / gpus}
    return out


# ---- the command-line job ----------------------------------------------------------------------
def params_job(args):
    from pra.model.network import PRANetwork
    from pra.model.scales import get_scale

    cfg = args.cfg
    n = args.num_classes or (1000 if cfg.data.source == "imagefolder" else 10)
    geom = Geometry(cfg.data.resolution, cfg.data.channels, cfg.model.patch_size, n)
    out = {}
    for s in cfg.scales:
        with torch.device("meta"):
            net = PRANetwork(get_scale(s), cfg.model, geom, "pra")
        out[s] = count_parameters(net)
    print(json.dumps(out))


def scales_job(args):
    from dataclasses import asdict

    from pra.model.scales import SCALES

    print(json.dumps({k: asdict(v) for k, v in SCALES.items()}, indent=2))


def estimate_job(args):
    cfg = args.cfg
    n = args.num_classes or (1000 if cfg.data.source == "imagefolder" else 10)
    bench = None
    if args.mfu is None and args.gpu_bench and Path(args.gpu_bench).exists():
        bench = json.loads(Path(args.gpu_bench).read_text())
    r = estimate(cfg, n, peak_tflops=args.peak_tflops, mfu=args.mfu, bench=bench, intra_gbps=args.intra_gbps,
                 inter_gbps=args.inter_gbps)
    print(json.dumps(r, indent=2))
    for s, v in r["scales"].items():
        for m, e in v["methods"].items():
            where = f"{v['train_nodes']} nodes x {max(1, v['train_gpus'])}" if v["train_nodes"] > 1 else \
                f"{v['gpus_per_job']}"
            batch = f"{v['per_gpu_batch']:g} per GPU" + (
                f" (benchmark: {v['benchmark_per_gpu_batch']}{'; MFU at the job batch not measured' if v['batch_differs_from_benchmark'] else ''})"
                if v["benchmark_per_gpu_batch"] else "")
            print(f"{s:6s} {m:14s} {v['params'] / 1e6:7.1f}M params  {e['flops_per_image'] / 1e9:8.1f} GFLOP/image/step  "
                  f"{e['gpu_hours']:9.0f} GPU-hours ({e['gpu_hours_allreduce']:.0f} of them all-reduce, modelled) "
                  f"= {e['wall_hours']:7.1f} h on {where} GPUs, {batch} "
                  f"({e['mfu_source']} MFU {e['mfu'] * 100:.0f}% of {e['peak_tflops']:.0f} TFLOP/s)", file=sys.stderr)
