"""`python -m pra estimate`: training compute of an experiment's scales, and GPU-hours at a stated MFU.

FLOPs of one training step per image are counted by torch.utils.flop_counter on a real forward and
backward at batch 1 (CPU), attention included (pra.flops), for the experiment's method and geometry.
GPU-hours divide them by a peak throughput times a model-FLOP utilisation. With the GPU benchmark
(benchmarks/gpu.json, written by `python -m pra bench` on CUDA) every scale is estimated on its card (its
nominal peak). Its MFU is "measured" only for a scale it timed at the experiment's geometry (image size, patch
size, channels, tokens as it records them), in the mode a CUDA job runs ('fast'; an earlier benchmark without
it: 'compiled'), for the method timed (latent_tf, pra); the label names what was timed (the job's iteration,
or in a benchmark from before the `format` key the step alone) and the mode read. A scale it did not time at
that geometry takes the lowest MFU it measured there ("lowest measured", never above a measurement); a
method it did not time takes PRA's ("assumed"); a benchmark at another geometry gives no MFU at all: the
assumed MFU, labelled with the reason. Without it, the assumed card at the assumed MFU. Each line says which.

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


def mfu_row(bench: dict, scale: str, method: str, mode: str = "fast") -> dict | None:
    """The MFU of `scale`'s training in a GPU benchmark (pra.bench.gpu) in `mode` (a benchmark from before the
    modes 'fast' had 'compiled' and 'eager' only: 'fast' reads its 'compiled'), for `method` when it was
    measured (latent_tf and pra are), else PRA's: {mfu, scale, mode (the one read), method (the one read),
    batch, tokens}."""
    for t in bench.get("training", []):
        if t.get("scale") != scale:
            continue
        modes = t.get("modes", {})
        read = mode if mode in modes else "compiled" if mode == "fast" and "fast" not in modes else None
        mfu = (modes.get(read) or {}).get("mfu") or {}
        m = method if mfu.get(method) else "pra"
        if mfu.get(m):
            return {"mfu": mfu[m], "scale": scale, "mode": read, "method": m, "batch": t.get("batch"),
                    "tokens": t.get("tokens")}
    return None


def measured_mfu(bench: dict, scale: str, method: str, mode: str = "fast") -> float | None:
    """mfu_row's MFU (whatever the geometry it was measured at: see geometry_mismatch)."""
    row = mfu_row(bench, scale, method, mode)
    return row["mfu"] if row else None


def describe_geometry(g: dict) -> str:
    parts = [f"{g['resolution']}px" if g.get("resolution") is not None else None,
             f"{g['patch_size']}px patches" if g.get("patch_size") is not None else None,
             f"{g['channels']} channel{'s' if g['channels'] != 1 else ''}" if g.get("channels") is not None else None,
             f"{g['tokens']} tokens" if g.get("tokens") is not None else None]
    return ", ".join(p for p in parts if p)


def geometry_mismatch(bench: dict, geom: Geometry, row: dict | None = None) -> str | None:
    """None where the benchmark measured at `geom` (its resolution, patch size, channels and tokens, as far as the
    benchmark records them: the resolution and the patch size or tokens at least; a row's tokens before the
    benchmark's); else why not."""
    have = {k: v for k, v in (bench.get("geometry") or {}).items() if v is not None}
    if row and row.get("tokens") is not None:
        have["tokens"] = row["tokens"]
    want = {"resolution": geom.resolution, "patch_size": geom.patch_size, "channels": geom.channels,
            "tokens": geom.num_tokens}
    have = {k: have[k] for k in want if k in have}
    if "resolution" not in have or not {"tokens", "patch_size"} & set(have):
        return "the benchmark records no geometry (its image size and patch size or tokens)"
    if all(have[k] == want[k] for k in have):
        return None
    return f"the benchmark measured {describe_geometry(have)}; this experiment is {describe_geometry(want)}"


def lowest_mfu_row(bench: dict, method: str, mode: str = "fast", geom: Geometry | None = None) -> dict | None:
    """The row of the lowest training MFU the benchmark measured in `mode` for any scale (at `geom` only, when
    given)."""
    rows = [mfu_row(bench, t["scale"], method, mode) for t in bench.get("training", []) if "scale" in t]
    rows = [r for r in rows if r and (geom is None or geometry_mismatch(bench, geom, r) is None)]
    return min(rows, key=lambda r: r["mfu"]) if rows else None


def lowest_measured_mfu(bench: dict, method: str, mode: str = "fast",
                        geom: Geometry | None = None) -> tuple[float, str] | None:
    """The lowest training MFU the benchmark measured in `mode` for any scale (at `geom` only, when given), and
    that scale."""
    row = lowest_mfu_row(bench, method, mode, geom)
    return (row["mfu"], row["scale"]) if row else None


def provenance(bench: dict, read: str, job: str) -> str:
    """What a benchmark's MFU is of: the training job's iteration (format 2) or, in a benchmark from before the
    format key (format 1), the step alone; in the mode read, and the job's where that differs."""
    what = "the job's iteration" if (bench.get("format") or 1) >= 2 else "earlier benchmark: the step alone"
    return f"{what}, {read} mode" + ("" if read == job else f", not the job's {job} mode")


def mfu_choice(bench: dict | None, scale: str, method: str, job: str, geom: Geometry, assumed: float,
               why_assumed: str) -> tuple[float, str, str, dict | None]:
    """The MFU of one line, its kind ('measured', 'lowest measured', 'assumed'), its label and the benchmark row it
    comes from. Measured: the benchmark timed `scale` at the experiment's geometry (a method it did not time takes
    PRA's, assumed). Lowest measured: a scale it did not time, at the lowest MFU it measured at that geometry
    (never above a measurement). Otherwise `assumed`, for the reason given or the geometry's."""
    if bench is None:
        return assumed, "assumed", f"assumed ({why_assumed})", None
    row = mfu_row(bench, scale, method, job)
    if row and geometry_mismatch(bench, geom, row) is None:
        src = provenance(bench, row["mode"], job)
        if row["method"] == method:
            return row["mfu"], "measured", f"measured ({src})", row
        return row["mfu"], "assumed", f"assumed: PRA's measured MFU ({src}) applied to {method}", row
    low = lowest_mfu_row(bench, method, job, geom)
    if low:
        src = provenance(bench, low["mode"], job)
        pra = "" if low["method"] == method else f"; PRA's, applied to {method}"
        return low["mfu"], "lowest measured", (f"lowest measured at this geometry, {low['scale']}'s ({src}{pra}); "
                                               f"{scale} not measured"), low
    why = geometry_mismatch(bench, geom, row) or f"the benchmark has no {job}-mode MFU of {scale}"
    return assumed, "assumed", f"assumed ({why})", None


def allreduce_seconds(params: int, gpus: int, nodes: int, *, intra_gbps: float, inter_gbps: float) -> float:
    """Seconds per step of a ring all-reduce of fp32 gradients over `gpus` GPUs (a model, see the module)."""
    if gpus <= 1:
        return 0.0
    volume = 2 * (gpus - 1) / gpus * params * 4
    return volume / ((inter_gbps if nodes > 1 else intra_gbps) * 1e9)


def estimate(cfg: ExperimentConfig, num_classes: int, *, peak_tflops: float | None = None, mfu: float | None = None,
             bench: dict | None = None, intra_gbps: float = 150.0, inter_gbps: float = 25.0) -> dict:
    """mfu None: the GPU benchmark's measured MFU where `bench` has the scale at the experiment's geometry, else its
    lowest MFU measured at that geometry, else 0.4 (assumed). peak_tflops: the card estimated for; given, it is
    another card than the benchmark's, whose MFUs are then not used; None: the benchmark's card, else 312 (A100
    bf16 dense, assumed). intra_gbps / inter_gbps: the all-reduce model's bus bandwidth within a node and across
    nodes (GB/s per GPU, assumed). Each line's mfu_kind says 'measured', 'lowest measured' or 'assumed', its
    mfu_source from what."""
    geom = Geometry(cfg.data.resolution, cfg.data.channels, cfg.model.patch_size, num_classes)
    card = (bench or {}).get("machine", {})
    use_bench = (mfu is None and peak_tflops is None and bench is not None
                 and bool(card.get("nominal_bf16_dense_flops")))
    assumed = 0.4 if mfu is None else mfu
    why_assumed = ("given" if mfu is not None else "no GPU benchmark" if bench is None
                   else "the peak given names another card than the benchmark's" if peak_tflops is not None
                   else "the benchmark records no card peak")
    peak = (card["nominal_bf16_dense_flops"] / 1e12 if use_bench else
            peak_tflops if peak_tflops is not None else 312.0)
    peak_note = (f"peak: {peak:g} TFLOP/s, the nominal bf16 dense peak of the benchmark's card ({card['device']})"
                 if use_bench else f"peak: {peak:g} TFLOP/s, given" if peak_tflops is not None else
                 f"peak: {peak:g} TFLOP/s, assumed (A100 bf16 dense)")
    out = {"assumptions": {"peak_tflops": peak, "mfu": assumed, "note": peak_note},
           "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "scales": {},
           "allreduce_model": {"intra_node_GBps": intra_gbps, "inter_node_GBps": inter_gbps,
                               "note": "ring all-reduce of fp32 gradients, 2(G-1)/G x 4 bytes x params per GPU and "
                                       "step, not overlapped with compute (an upper bound); bandwidths assumed"}}
    mode = job_mode(cfg)
    if use_bench:
        g = bench.get("geometry") or {}
        what = ("the training job's iteration" if (bench.get("format") or 1) >= 2 else
                "the training step alone (an earlier benchmark, without the format key: modes eager and compiled)")
        mismatch = geometry_mismatch(bench, geom)
        out["measured"] = {"device": card["device"], "peak_tflops": peak, "format": bench.get("format") or 1,
                           "geometry": g, "geometry_matches": mismatch is None,
                           "note": f"MFU of {what}, measured by `python -m pra bench` on {card['device']} at "
                                   f"{describe_geometry(g) or 'an unrecorded geometry'} (per-GPU batch per scale "
                                   "below); every scale is estimated on that card. "
                                   + ("A scale it measured is estimated at its MFU, one it did not at the lowest "
                                      "MFU it measured (never above a measurement)" if mismatch is None else
                                      f"No MFU of it is used: {mismatch}")}
    out["benchmark_mode"] = mode
    kinds: dict[str, list[str]] = {"measured": [], "lowest measured": [], "assumed": []}
    for scale in cfg.scales:
        net = build_network(cfg, scale, cfg.methods[0], geom)
        params = count_parameters(net)
        nodes = cfg.resource(scale, "train_nodes")
        gpus = max(cfg.resource(scale, "train_gpus"), 1) * nodes
        comm = allreduce_seconds(params, gpus, nodes, intra_gbps=intra_gbps, inter_gbps=inter_gbps)
        per_method, bench_batch = {}, None
        for method in cfg.methods:
            f = flops_per_image(cfg, scale, method, geom)
            total = f * cfg.train.batch_size * cfg.train.steps
            u, kind, source, row = mfu_choice(bench if use_bench else None, scale, method, mode, geom, assumed,
                                              why_assumed)
            kinds[kind].append(f"{scale} {method} ({u * 100:.0f}%)")
            if row and bench_batch is None:
                bench_batch = row.get("batch")
            compute = total / (peak * 1e12 * u) / 3600
            allreduce = comm * cfg.train.steps * gpus / 3600
            per_method[method] = {"flops_per_image": f, "total_flops": total, "mfu": u, "mfu_kind": kind,
                                  "mfu_source": source, "peak_tflops": peak, "gpu_hours_compute": compute,
                                  "gpu_hours_allreduce": allreduce, "gpu_hours": compute + allreduce,
                                  "wall_hours": (compute + allreduce) / gpus}
        out["scales"][scale] = {"params": params, "methods": per_method,
                                "train_gpus": cfg.resource(scale, "train_gpus"), "train_nodes": nodes,
                                "gpus_per_job": gpus, "per_gpu_batch": cfg.train.batch_size / gpus,
                                "benchmark_per_gpu_batch": bench_batch, "allreduce_seconds_per_step": comm,
                                "batch_differs_from_benchmark": bool(bench_batch) and
                                bench_batch != cfg.train.batch_size / gpus}
    said = {"measured": "measured by the benchmark", "lowest measured": "the lowest the benchmark measured at "
            "this geometry (scale not measured)", "assumed": "assumed"}
    out["assumptions"]["note"] = peak_note + "; MFU " + "; ".join(
        f"{said[k]} for {', '.join(v)}" for k, v in kinds.items() if v) + " (each line's mfu_source says from what)"
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
                  f"{_hours(e['gpu_hours'])} GPU-hours ({_hours(e['gpu_hours_allreduce'], 0)} of them all-reduce, "
                  f"modelled) = {e['wall_hours']:7.1f} h on {where} GPUs, {batch}; "
                  f"MFU {e['mfu'] * 100:.0f}% of {e['peak_tflops']:.4g} TFLOP/s: {e['mfu_source']}", file=sys.stderr)
    print(f"Assumptions: {r['assumptions']['note']}", file=sys.stderr)


def _hours(h: float, width: int = 9) -> str:
    """Whole hours, or two significant digits below 10 (a CPU-sized experiment's hours are fractions)."""
    return f"{h:{width}.0f}" if h >= 10 or h == 0 else f"{h:{width}.2g}"
