"""`python -m pra bench` on a CUDA machine: benchmarks/gpu.json and benchmarks/gpu.md.

Measured side by side in one run, on random data and random weights (speed does not depend on either):
  * the card, its nominal dense bf16 peak and its measured bf16 matmul throughput;
  * per scale: the training step of latent_tf (teacher forcing) and pra, eager and compiled (pra.speed), bf16
    autocast as pra.train runs it: time, PRA/TF, model-FLOP utilisation (FLOPs counted by
    torch.utils.flop_counter on the eager step), peak memory per method;
  * a profile of the compiled PRA step at the first scale (where the time goes);
  * sampling with the ImageNet-256 settings (50 Heun steps, CFG 3.0 with the linear schedule): the eager fp32
    sampler against the fast path (bf16 weights, the head ODE as a CUDA graph), images/s and memory per batch
    size, and how far fast-path samples lie from fp32 ones next to how far two fp32 seeds lie apart.
Every section is written to the JSON as soon as it is measured; a section that fails records its error.
"""
from __future__ import annotations

import gc
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch

from pra.bench.common import StepRunner, check_target, time_interleaved
from pra.config import ExperimentConfig
from pra.flow import make_flow
from pra.io import write_json
from pra.model.network import Geometry, count_parameters
from pra.rollout import HeadODE, SamplerSettings, rollout
from pra.runtime import generator
from pra.checkpoint import build_network

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the SXM parts.
NOMINAL_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0, "B200": 2250.0}
TARGETS = {"mfu_pra": {"PRA-S": 0.40, "PRA-L": 0.45}, "pra_over_tf": 1.25, "images_per_s_pra_s": 55.0}
IMAGENET = Geometry(256, 3, 16, 1000)
SAMPLE_SETTINGS = SamplerSettings(ode_steps=50, solver="heun", cfg_scale=3.0, cfg_schedule="linear")


def nominal_peak(name: str) -> float | None:
    for key, tflops in NOMINAL_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def cuda_seconds(fn, device, warmup: int = 2, reps: int = 5) -> float:
    """Median wall seconds of fn() with the device synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak_bf16(device, n: int = 8192) -> float:
    g = generator(0, device)
    a = torch.randn(n, n, generator=g, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, generator=g, device=device, dtype=torch.bfloat16)
    return 2 * n ** 3 / cuda_seconds(lambda: a @ b, device, warmup=3, reps=10)


def randomise_zero_layers(net, seed: int = 1) -> None:
    """The zero-initialised output layers (head modulation and output) get small random weights, so that
    the sampler's numerics are exercised as in a trained model rather than on an identically-zero head."""
    g = generator(seed)
    with torch.no_grad():
        for p in net.parameters():
            if bool((p == 0).all()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def free_memory(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory_allocated(device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def peak_memory(device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


# ---- training ------------------------------------------------------------------------------------------
def bench_training_step(cfg: ExperimentConfig, scale: str, device, geom: Geometry, *, batch: int, reps: int,
                        peak: float | None, profile: bool = False) -> dict:
    """TF and PRA steps, eager then compiled; each method's memory is what its runner adds (weights, AdamW
    state, gradients, activations at the step's peak) over what was allocated before it was built."""
    methods = ("latent_tf", "pra")
    out = {"scale": scale, "batch": batch, "tokens": geom.num_tokens, "modes": {}}
    flops = {}
    for compiled in (False, True):
        if compiled:
            from torch import _dynamo

            _dynamo.reset()  # no shapes carried over from another scale (no dynamic-shape recompiles)
        runners, first, memory = {}, {}, {}
        for m in methods:
            base = memory_allocated(device)
            r = StepRunner(cfg, scale, m, geom, batch, device=device, compile=compiled)
            first[m] = r.step()  # compilation happens here
            r.step()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            r.step()
            memory[m] = peak_memory(device) - base
            runners[m] = r
            if not compiled:
                flops[m] = r.flops()
        med = time_interleaved(runners, warmup=1, reps=reps)
        mode = {"step_seconds": med, "first_step_seconds": first, "peak_memory_bytes": memory,
                "pra_over_tf": med["pra"] / med["latent_tf"],
                "achieved_flops": {m: flops[m] / med[m] for m in methods}}
        if peak:
            mode["mfu"] = {m: flops[m] / med[m] / peak for m in methods}
        out["modes"]["compiled" if compiled else "eager"] = mode
        out["params"] = count_parameters(runners["pra"].net)
        if compiled and profile:
            try:
                out["profile"] = profile_steps(runners["pra"], device)
            except Exception as e:  # a profiler that cannot attach must not cost the timings
                out["profile"] = f"profiler failed: {type(e).__name__}: {e}"
        del runners, r
        free_memory(device)
    out["flops_per_step"] = flops
    return out


def profile_steps(runner, device, steps: int = 3, rows: int = 15) -> str:
    """The step's operators by device time (torch.profiler), as text."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            runner.step()
    avg = prof.key_averages()
    keys = ("self_device_time_total", "self_cuda_time_total") if device.type == "cuda" else ("self_cpu_time_total",)
    for key in keys:
        try:
            return avg.table(sort_by=key, row_limit=rows, max_name_column_width=60)
        except (AttributeError, KeyError, RuntimeError):
            continue
    return avg.table(row_limit=rows)


# ---- sampling ------------------------------------------------------------------------------------------
def sampling_net(cfg: ExperimentConfig, scale: str, device, geom: Geometry, dtype: torch.dtype):
    c = cfg.replace(model={"z_dim": 16})
    net = build_network(c, scale, "pra", geom, init_seed=0)
    randomise_zero_layers(net)
    return net.to(device=device, dtype=dtype).eval(), make_flow(c.model, True)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rollout(net, flow, settings: SamplerSettings, batch: int, device, *, positions: int | None, graphs: bool,
                 seed: int = 5) -> dict:
    """One batch of the first `positions` positions (all when None): seconds and peak memory. CUDA graphs are
    captured before the timing (once per job in practice) on a two-position batch of the same size."""
    from pra.head_graph import GraphedHeadODE

    g = net.geometry
    n = positions or g.num_tokens
    labels = torch.arange(batch, device=device) % g.num_classes
    graphs = graphs and device.type == "cuda"
    ode = GraphedHeadODE(flow, net.head, settings) if graphs else HeadODE(flow, net.head, settings)
    free_memory(device)
    t = time.perf_counter()
    if graphs:
        rollout(net, flow, labels, settings, generator(seed, device), ode=ode, positions=2)
    sync(device)
    capture = time.perf_counter() - t
    t = time.perf_counter()
    r = rollout(net, flow, labels, settings, generator(seed, device), ode=ode, positions=n)
    sync(device)
    sec = time.perf_counter() - t
    return {"batch": batch, "tokens": n, "seconds": sec, "capture_seconds": capture if graphs else 0.0,
            "images_per_second": batch / sec * n / g.num_tokens,
            "extrapolated_from_tokens": None if n == g.num_tokens else n,
            "peak_memory_bytes": peak_memory(device), "patches": r.patches.float()}


def bench_sampling_speed(cfg: ExperimentConfig, scale: str, device, geom: Geometry, settings: SamplerSettings, *,
                         batches: list[int], prefix_tokens: int, full: bool) -> dict:
    """Eager fp32 (the sampler without the fast path) vs bf16 + CUDA graphs on the same first positions, at
    every batch size when `full` (else the first), then the fast path alone at each batch size (whole images
    when `full`, else the prefix)."""
    out = {"scale": scale, "settings": {"ode_steps": settings.ode_steps, "solver": settings.solver,
                                        "cfg_scale": settings.cfg_scale, "cfg_schedule": settings.cfg_schedule},
           "side_by_side": [], "fast": []}
    net32, flow = sampling_net(cfg, scale, device, geom, torch.float32)
    net16, _ = sampling_net(cfg, scale, device, geom, torch.bfloat16)
    out["params"] = count_parameters(net32)
    for b in batches if full else batches[:1]:
        try:
            ref = time_rollout(net32, flow, settings, b, device, positions=prefix_tokens, graphs=False)
            fast = time_rollout(net16, flow, settings, b, device, positions=prefix_tokens, graphs=True)
        except torch.cuda.OutOfMemoryError:
            out["side_by_side"].append({"batch": b, "out_of_memory": True})
            free_memory(device)
            continue
        out["side_by_side"].append({"batch": b, "tokens": prefix_tokens,
                                    "eager_fp32_seconds": ref["seconds"], "fast_seconds": fast["seconds"],
                                    "speedup": ref["seconds"] / fast["seconds"],
                                    "eager_fp32_images_per_second_extrapolated": ref["images_per_second"],
                                    "fast_images_per_second_extrapolated": fast["images_per_second"]})
        del ref, fast
        free_memory(device)
    del net32
    free_memory(device)
    for b in batches:
        try:
            r = time_rollout(net16, flow, settings, b, device, positions=None if full else prefix_tokens, graphs=True)
            r.pop("patches")
        except torch.cuda.OutOfMemoryError:
            r = {"batch": b, "out_of_memory": True}
        out["fast"].append(r)
        free_memory(device)
    del net16
    free_memory(device)
    return out


def bench_agreement(cfg: ExperimentConfig, scale: str, device, geom: Geometry, settings: SamplerSettings, *,
                    batch: int, eager_tokens: int) -> dict:
    """Pixel distances (in [-1, 1]) between samples from the same noise: eager vs CUDA graph at fp32 (on the
    first `eager_tokens` positions: the eager path is slow), bf16 fast path vs fp32 on whole images; and, as
    the scale they are judged on, between two fp32 seeds."""
    def run(dtype, graphs, seed, positions=None):
        net, flow = sampling_net(cfg, scale, device, geom, dtype)
        return time_rollout(net, flow, settings, batch, device, positions=positions, graphs=graphs,
                            seed=seed)["patches"]

    def dist(a, b):
        d = (a - b).abs()
        return {"mean_abs": d.mean().item(), "max_abs": d.max().item()}

    eager32 = run(torch.float32, False, 5, eager_tokens)
    graph32 = run(torch.float32, True, 5)
    fast16 = run(torch.bfloat16, True, 5)
    other32 = run(torch.float32, True, 6)
    out = {"scale": scale, "batch": batch, "tokens": int(graph32.shape[1]), "eager_tokens": eager_tokens,
           "graph_vs_eager_fp32": dist(graph32[:, :eager_tokens], eager32),
           "bf16_fast_vs_fp32": dist(fast16, graph32), "fp32_seed_vs_seed": dist(other32, graph32)}
    out["bf16_within_seed_spread"] = out["bf16_fast_vs_fp32"]["mean_abs"] < 0.5 * out["fp32_seed_vs_seed"]["mean_abs"]
    free_memory(device)
    return out


# ---- the run -------------------------------------------------------------------------------------------
def run_gpu_bench(cfg: ExperimentConfig, out_dir: str | Path, *, device: str = "cuda",
                  scales: tuple[str, ...] = ("PRA-S", "PRA-B", "PRA-L"), batch: int = 64, reps: int = 10,
                  sample_scales: tuple[str, ...] = ("PRA-S", "PRA-L"), sample_batches: tuple[int, ...] = (256, 1024),
                  prefix_tokens: int = 16, agreement_batch: int = 16, eager_tokens: int = 32,
                  geometry: Geometry = IMAGENET, settings: SamplerSettings = SAMPLE_SETTINGS) -> dict:
    """Whole images are timed at the first sampling scale; the others on `prefix_tokens` positions."""
    device = torch.device(device)
    out_dir = Path(out_dir)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    peak = nominal_peak(name) if device.type == "cuda" else None
    res = {"machine": {"device": name, "torch": torch.__version__, "platform": platform.platform(),
                       "nominal_bf16_dense_flops": peak,
                       "memory_bytes": torch.cuda.get_device_properties(device).total_memory
                       if device.type == "cuda" else None},
           "geometry": {"resolution": geometry.resolution, "channels": geometry.channels,
                        "patch_size": geometry.patch_size, "tokens": geometry.num_tokens},
           "targets": TARGETS, "training": [], "sampling": [], "agreement": [], "errors": []}
    if device.type == "cuda":  # (fp32 matmuls keep PyTorch's default: full fp32, no TF32)
        res["machine"]["matmul_bf16_flops_measured"] = matmul_peak_bf16(device)

    def save():
        write_json(out_dir / "gpu.json", res)
        (out_dir / "gpu.md").write_text(markdown(res))

    def section(what, fn, into):
        t = time.perf_counter()
        try:
            r = fn()
            r["wall_seconds"] = time.perf_counter() - t
            into.append(r)
        except Exception as e:  # one failing section must not lose the others
            res["errors"].append({"section": what, "error": f"{type(e).__name__}: {e}",
                                  "traceback": traceback.format_exc(limit=8)})
            free_memory(device)
        print(f"[bench gpu] {what}: {time.perf_counter() - t:.1f} s", flush=True)
        save()

    section("agreement", lambda: bench_agreement(cfg, sample_scales[0], device, geometry, settings,
                                                 batch=agreement_batch, eager_tokens=eager_tokens), res["agreement"])
    def sampling(i, s):
        section(f"sampling {s}", lambda: bench_sampling_speed(
            cfg, s, device, geometry, settings, batches=list(sample_batches), prefix_tokens=prefix_tokens,
            full=i == 0), res["sampling"])

    # the first sampling scale, every training scale, then the other sampling scales (extrapolated ones last)
    sampling(0, sample_scales[0])
    for i, s in enumerate(scales):
        section(f"training {s}", lambda s=s, i=i: bench_training_step(
            cfg, s, device, geometry, batch=batch, reps=reps, peak=peak, profile=i == 0), res["training"])
    for i, s in enumerate(sample_scales[1:], start=1):
        sampling(i, s)
    return res


def _out_of_memory_row(scale: str, batch: int, columns: int) -> str:
    return "| " + " | ".join([scale, str(batch), "-", "out of memory"] + ["-"] * (columns - 4)) + " |"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def markdown(r: dict) -> str:
    m = r["machine"]
    peak = m.get("nominal_bf16_dense_flops")
    mm = m.get("matmul_bf16_flops_measured")
    lines = ["# GPU benchmarks (measured by `python -m pra bench` on CUDA)", "",
             f"Card: {m['device']}, torch {m['torch']}; nominal dense bf16 peak "
             f"{'unknown' if not peak else f'{peak / 1e12:.0f} TFLOP/s'}; measured bf16 matmul (8192^3) "
             f"{'n/a' if not mm else f'{mm / 1e12:.0f} TFLOP/s'}. Random data and weights; geometry "
             f"{r['geometry']['resolution']}px, {r['geometry']['tokens']} tokens of {r['geometry']['patch_size']}x"
             f"{r['geometry']['patch_size']}x{r['geometry']['channels']}, z 16. Model-FLOP utilisation (MFU) = FLOPs of the eager step (counted by "
             "torch.utils.flop_counter) / step time / nominal peak.", ""]
    if r["training"]:
        lines += ["## Training step (bf16 autocast; batch x tokens; medians of interleaved steps)", "",
                  "| scale | params | batch | mode | TF step | PRA step | PRA/TF | MFU (PRA) | MFU (TF) | "
                  "peak memory TF / PRA | first step (compile) TF / PRA |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in r["training"]:
            # eager first: the JSON sorts the keys
            for mode, v in sorted(t["modes"].items(), key=lambda kv: kv[0] != "eager"):
                s, mem, f = v["step_seconds"], v["peak_memory_bytes"], v["first_step_seconds"]
                mfu = v.get("mfu", {})
                lines.append(f"| {t['scale']} | {t['params'] / 1e6:.1f}M | {t['batch']} | {mode} | "
                             f"{s['latent_tf'] * 1e3:.1f} ms | {s['pra'] * 1e3:.1f} ms | {v['pra_over_tf']:.2f} | "
                             f"{_pct(mfu.get('pra'))} | {_pct(mfu.get('latent_tf'))} | "
                             f"{mem['latent_tf'] / 2 ** 30:.1f} / {mem['pra'] / 2 ** 30:.1f} GiB | "
                             f"{f['latent_tf']:.1f} / {f['pra']:.1f} s |")
        lines += ["", "Targets (compiled step):"]
        for t in r["training"]:
            v = t["modes"].get("compiled")
            if not v:
                continue
            goal = TARGETS["mfu_pra"].get(t["scale"])
            mfu = v.get("mfu", {}).get("pra")
            if goal is not None and mfu is not None:
                lines.append(f"- {t['scale']}: MFU of the PRA step {_pct(mfu)}: "
                             f"{check_target(mfu, ('>=', goal), lambda b: f'{b * 100:.0f}%')}")
            lines.append(f"- {t['scale']}: PRA/TF {v['pra_over_tf']:.2f}: "
                         f"{check_target(v['pra_over_tf'], ('<=', TARGETS['pra_over_tf']))}")
    if r["sampling"]:
        st = r["sampling"][0]["settings"]
        lines += ["", f"## Sampling ({st['ode_steps']} {st['solver']} steps per token, CFG {st['cfg_scale']} "
                  f"{st['cfg_schedule']} schedule; 50 heun, 3.0 linear are the imagenet256 settings)", "",
                  "Side by side on the first positions of one batch: the eager fp32 sampler (the path without these "
                  "settings) against "
                  "the fast path (bf16 weights, fp32 ODE state, each position's head ODE replayed as one CUDA graph). "
                  "images/s from a prefix are extrapolated to 256 tokens (marked).", "",
                  "| scale | batch | tokens | eager fp32 | fast | speed-up | eager images/s (extrap.) | fast images/s (extrap.) |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in r["sampling"]:
            for v in s["side_by_side"]:
                if v.get("out_of_memory"):
                    lines.append(_out_of_memory_row(s["scale"], v["batch"], columns=8))
                    continue
                lines.append(f"| {s['scale']} | {v['batch']} | {v['tokens']} | {v['eager_fp32_seconds']:.2f} s | "
                             f"{v['fast_seconds']:.2f} s | {v['speedup']:.1f}x | "
                             f"{v['eager_fp32_images_per_second_extrapolated']:.1f} | "
                             f"{v['fast_images_per_second_extrapolated']:.1f} |")
        lines += ["", "Fast path by batch size (whole images unless marked; memory is the peak allocated by the job):",
                  "", "| scale | batch | tokens timed | seconds | images/s | CUDA-graph capture | peak memory |",
                  "|---|---|---|---|---|---|---|"]
        for s in r["sampling"]:
            for f in s["fast"]:
                if f.get("out_of_memory"):
                    lines.append(_out_of_memory_row(s["scale"], f["batch"], columns=7))
                    continue
                ex = "" if f["extrapolated_from_tokens"] is None else " (extrap.)"
                lines.append(f"| {s['scale']} | {f['batch']} | {f['tokens']} | {f['seconds']:.2f} s | "
                             f"{f['images_per_second']:.1f}{ex} | {f['capture_seconds']:.1f} s | "
                             f"{f['peak_memory_bytes'] / 2 ** 30:.1f} GiB |")
        for s in r["sampling"]:
            if s["scale"] == "PRA-S":
                best = max((f for f in s["fast"] if "seconds" in f and f["extrapolated_from_tokens"] is None),
                           key=lambda f: f["images_per_second"], default=None)
                if best:
                    goal = TARGETS["images_per_s_pra_s"]
                    lines += ["", f"- PRA-S: {best['images_per_second']:.1f} images/s at batch {best['batch']}: "
                              f"{check_target(best['images_per_second'], ('>=', goal), lambda g: f'{g:.0f}')}; "
                              f"an FID-50K sample takes {50000 / best['images_per_second'] / 60:.0f} min on this card"]
            else:
                f = max((f for f in s["fast"] if "seconds" in f), key=lambda f: f["images_per_second"], default=None)
                if f:
                    lines.append(f"- {s['scale']}: {f['images_per_second']:.1f} images/s at batch {f['batch']}"
                                 f"{' (extrapolated)' if f['extrapolated_from_tokens'] else ''}: an FID-50K sample "
                                 f"takes {50000 / f['images_per_second'] / 60:.0f} min")
    if r["agreement"]:
        a = r["agreement"][0]
        lines += ["", f"## Agreement ({a['scale']}, random weights with non-zero head outputs, batch {a['batch']}, "
                  f"{a['tokens']} tokens, pixels in [-1, 1])", "",
                  "| pair (same noise unless stated) | mean abs | max abs |", "|---|---|---|"]
        for k, label in (("graph_vs_eager_fp32", "CUDA graph vs eager, fp32"),
                         ("bf16_fast_vs_fp32", "fast path (bf16 + graph) vs fp32"),
                         ("fp32_seed_vs_seed", "fp32, two different seeds (the spread)")):
            lines.append(f"| {label} | {a[k]['mean_abs']:.2e} | {a[k]['max_abs']:.2e} |")
        lines += ["", f"- bf16 fast path within half the seed-to-seed distance: {a['bf16_within_seed_spread']}"]
    for t in r["training"]:
        if t.get("profile"):
            lines += ["", f"## Where the time goes: compiled PRA step at {t['scale']} (3 steps, torch.profiler)", "",
                      "```", t["profile"].rstrip(), "```"]
    if r["errors"]:
        lines += ["", "## Sections that failed", ""] + [f"- {e['section']}: {e['error']}" for e in r["errors"]]
    return "\n".join(lines) + "\n"
