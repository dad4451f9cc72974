"""The CPU benchmark of `python -m pra bench`: speed and memory ratios measured side by side in one run.

Writes benchmarks/results.json and benchmarks/results.md with
  * PRA training step / teacher-forced (latent_tf) step, same model, batch and initial weights;
  * sequential-twin step / PRA step and anchored-rollout step / PRA step (the costs PRA avoids);
  * saved-activation memory of the PRA step / the teacher-forced step (the no-grad pass keeps none);
  * KV-cached vs full-recompute sampling at 256 tokens (time ratio and output agreement);
  * training model-FLOP utilisation against this machine's measured fp32 matmul peak.
Steps of the compared methods are interleaved, so that drift of the machine affects them alike.
"""
from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import torch

from pra.bench.common import StepRunner, check_target, matmul_peak, time_interleaved
from pra.checkpoint import build_network
from pra.config import ExperimentConfig
from pra.flow import make_flow
from pra.io import write_json
from pra.model.network import Geometry, count_parameters
from pra.rollout import SamplerSettings, rollout
from pra.runtime import generator, set_threads

TARGETS = {"pra_over_tf_step": ("<=", 1.35), "pra_over_tf_activation_memory": ("<=", 1.3),
           "kv_speedup_trunk_256": (">=", 8.0), "mfu": (">=", 0.35)}


def bench_training(cfg: ExperimentConfig, scale: str, reps: int) -> dict:
    geom = Geometry(cfg.data.resolution, cfg.data.channels, cfg.model.patch_size, 10)
    B = cfg.train.batch_size
    runners = {m: StepRunner(cfg, scale, m, geom, B) for m in ("latent_tf", "pra", "pra_sequential", "anchored_rollout")}
    med = time_interleaved(runners, warmup=3, reps=reps)
    mem = {m: runners[m].saved_activation_bytes() for m in ("latent_tf", "pra")}
    flops = {m: runners[m].flops() for m in ("latent_tf", "pra")}
    return {"scale": scale, "batch": B, "tokens": geom.num_tokens, "patch_dim": geom.patch_dim,
            "params": count_parameters(runners["pra"].net),
            "step_seconds": med, "pra_over_tf_step": med["pra"] / med["latent_tf"],
            "sequential_over_pra_step": med["pra_sequential"] / med["pra"],
            "anchored_over_pra_step": med["anchored_rollout"] / med["pra"],
            "activation_bytes": mem, "pra_over_tf_activation_memory": mem["pra"] / mem["latent_tf"],
            "flops_per_step": flops,
            "achieved_flops": {m: flops[m] / med[m] for m in flops}}


def bench_sampling(cfg: ExperimentConfig, scale: str, batch: int, reps: int, ode_steps: int) -> dict:
    """256 tokens: the ImageNet-256 geometry (patch 16, RGB, z 16)."""
    geom = Geometry(256, 3, 16, 1000)
    c = cfg.replace(model={"z_dim": 16})
    net = build_network(c, scale, "pra", geom, init_seed=0).eval()
    flow = make_flow(c.model, True)
    s = SamplerSettings(ode_steps=ode_steps, solver="heun")
    labels = torch.arange(batch)
    times = {"cached": [], "recompute": []}
    out = {}
    for i in range(reps + 1):
        for mode in ("cached", "recompute"):
            t = time.perf_counter()
            r = rollout(net, flow, labels, s, generator(5), use_cache=mode == "cached")
            if i:
                times[mode].append(time.perf_counter() - t)
            out[mode] = r.patches
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = (out["cached"] - out["recompute"]).abs().max().item()
    trunk = bench_trunk_decode(net, batch)
    # KV cache bytes at the full length: linear in the sequence length by construction
    body = net.trunk.body
    cache_bytes = 2 * body.depth * batch * (geom.num_tokens + c.model.prefix_tokens) * body.width * 4
    return {"scale": scale, "params": count_parameters(net), "trunk_params": count_parameters(net.trunk),
            "tokens": geom.num_tokens, "batch": batch, "ode_steps": s.ode_steps,
            "solver": s.solver, "seconds": med, "kv_speedup_256": med["recompute"] / med["cached"],
            "max_abs_diff": diff, "tolerance": 1e-3, "outputs_equal_within_tolerance": diff <= 1e-3,
            "kv_cache_bytes_full_length": cache_bytes, "trunk_decode": trunk,
            "kv_speedup_trunk_256": trunk["speedup"]}


@torch.no_grad()
def bench_trunk_decode(net, batch: int) -> dict:
    """The part the cache changes: 256 trunk steps over a given sequence, cached vs recomputed."""
    g = net.geometry
    x = torch.rand(batch, g.num_tokens, g.patch_dim, generator=generator(3)) * 2 - 1
    labels = torch.arange(batch)
    times = {}
    t = time.perf_counter()
    cache = net.trunk.new_cache(batch, "cpu")
    hs = [net.trunk.prefill(labels, cache)]
    for i in range(g.num_tokens - 1):
        hs.append(net.trunk.step(x[:, i], cache))
    times["cached"] = time.perf_counter() - t
    t = time.perf_counter()
    hr = [net.trunk(x[:, :i], labels)[:, -1] for i in range(g.num_tokens)]
    times["recompute"] = time.perf_counter() - t
    diff = (torch.stack(hs, 1) - torch.stack(hr, 1)).abs().max().item()
    return {"seconds": times, "speedup": times["recompute"] / times["cached"], "max_abs_diff_hidden": diff}


def run_bench(cfg: ExperimentConfig, out_dir: str | Path, *, threads: int = 1, reps: int = 15,
              scales: tuple[str, ...] = ("tiny-S",), sample_scales: tuple[str, ...] = ("tiny-S", "PRA-S"),
              sample_ode_steps: int = 16) -> dict:
    set_threads(threads)
    peak = matmul_peak(threads)
    set_threads(threads)
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "torch": torch.__version__, "threads": threads,
                           "matmul_peak_flops_fp32": peak},
               "training": [], "sampling": [], "targets": TARGETS}
    for s in scales:
        tr = bench_training(cfg, s, reps)
        tr["mfu"] = {m: f / peak for m, f in tr["achieved_flops"].items()}
        results["training"].append(tr)
    for s in sample_scales:
        results["sampling"].append(bench_sampling(cfg, s, batch=1, reps=1, ode_steps=sample_ode_steps))
    out_dir = Path(out_dir)
    write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(markdown(results))
    return results


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# Benchmarks (measured by `python -m pra bench`)", "",
             f"Machine: {m['processor']}, {m['platform']}, torch {m['torch']}, {m['threads']} thread(s); "
             f"measured fp32 matmul peak {m['matmul_peak_flops_fp32'] / 1e9:.1f} GFLOP/s (2048x2048).", "",
             "## Training step (same model, batch and weights; medians of interleaved steps)", "",
             "| scale | params | batch x tokens | TF step | PRA step | sequential-twin step | anchored-rollout step | "
             "PRA/TF | sequential/PRA | anchored/PRA | PRA/TF activation memory | MFU (PRA) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in r["training"]:
        s = t["step_seconds"]
        lines.append(f"| {t['scale']} | {t['params'] / 1e6:.2f}M | {t['batch']} x {t['tokens']} | "
                     f"{s['latent_tf'] * 1e3:.1f} ms | {s['pra'] * 1e3:.1f} ms | {s['pra_sequential'] * 1e3:.1f} ms | "
                     f"{s['anchored_rollout'] * 1e3:.1f} ms | {t['pra_over_tf_step']:.2f} | "
                     f"{t['sequential_over_pra_step']:.2f} | {t['anchored_over_pra_step']:.2f} | "
                     f"{t['pra_over_tf_activation_memory']:.2f} | {t['mfu']['pra'] * 100:.1f}% |")
    lines += ["", "Targets:"]
    for t in r["training"]:
        lines += [f"- {t['scale']}: PRA/TF step {t['pra_over_tf_step']:.2f}: "
                  f"{check_target(t['pra_over_tf_step'], TARGETS['pra_over_tf_step'])}",
                  f"- {t['scale']}: PRA/TF saved-activation memory {t['pra_over_tf_activation_memory']:.2f}: "
                  f"{check_target(t['pra_over_tf_activation_memory'], TARGETS['pra_over_tf_activation_memory'])}",
                  f"- {t['scale']}: model-FLOP utilisation of the PRA step {t['mfu']['pra'] * 100:.1f}% "
                  f"(FLOPs counted by torch.utils.flop_counter): "
                  f"{check_target(t['mfu']['pra'], TARGETS['mfu'])}"]
    lines += ["", "## Sampling at 256 tokens (ImageNet-256 geometry: patch 16, RGB, z 16; batch 1)", "",
              "Trunk decode: the 256 trunk steps alone (prefill + 255 cached steps vs 256 forwards of the growing "
              "prefix), the work the KV cache changes; the target is checked here. End to end: the whole sampler "
              "with the head ODE, whose cost is identical in both modes, so its ratio is smaller and shrinks as the "
              "head's share grows (at batch 1 on a CPU the head's matrix-vector products dominate).", "",
              "| scale | params (trunk) | trunk decode: cached / recompute | speed-up | end to end "
              f"({r['sampling'][0]['ode_steps']} {r['sampling'][0]['solver']} head steps): cached / recompute | "
              "speed-up | max abs diff (pixels) |",
              "|---|---|---|---|---|---|---|"]
    for s in r["sampling"]:
        td = s["trunk_decode"]
        lines.append(f"| {s['scale']} | {s['params'] / 1e6:.1f}M ({s['trunk_params'] / 1e6:.1f}M) | "
                     f"{td['seconds']['cached']:.2f} s / {td['seconds']['recompute']:.2f} s | {td['speedup']:.1f}x | "
                     f"{s['seconds']['cached']:.2f} s / {s['seconds']['recompute']:.2f} s | "
                     f"{s['kv_speedup_256']:.1f}x | {s['max_abs_diff']:.1e} |")
    lines += [""] + [f"- {s['scale']}: KV-cache speed-up of the trunk decode {s['kv_speedup_trunk_256']:.1f}x: "
                     f"{check_target(s['kv_speedup_trunk_256'], TARGETS['kv_speedup_trunk_256'])}; cached and recomputed "
                     f"samples equal within {s['tolerance']} (pixels in [-1, 1]): "
                     f"{s['outputs_equal_within_tolerance']}; KV cache at full length "
                     f"{s['kv_cache_bytes_full_length'] / 2 ** 20:.1f} MiB, linear in the sequence length"
                     for s in r["sampling"]]
    return "\n".join(lines) + "\n"
