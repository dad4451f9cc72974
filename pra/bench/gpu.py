"""`python -m pra bench` on a CUDA machine: benchmarks/gpu.json and benchmarks/gpu.md.

Measured side by side in one run, on random data and random weights (speed does not depend on either):
  * the card, its nominal dense bf16 peak and its measured bf16 matmul throughput;
  * per scale, at the experiment's per-GPU batch: the training job's iteration (pra.train.Iteration: batches
    read from a prepared split on disk, the shared step under the experiment's precision, EMA, logging at its
    cadence) of latent_tf (teacher forcing) and pra, in modes eager / compiled / fast (the speed options a CUDA
    job runs with), interleaved: seconds per iteration (median and range), PRA/TF, model-FLOP utilisation
    (FLOPs counted with attention by pra.flops on the eager step), peak memory per method;
  * a profile of the PRA iteration at the first scale (where the time goes);
  * sampling with the ImageNet-256 settings (50 Heun steps, CFG 3.0 with the linear schedule), whole images
    only: the fast path (bf16 weights, the head ODE as a CUDA graph) at the configured batch and the eager fp32
    sampler beside it at one equal batch, repetitions with median and range; and how far fast-path samples lie
    from fp32 ones next to how far two fp32 seeds lie apart (random weights; `python -m pra bench-precision`
    measures this on a trained model); and where one batch of the first scale's fast path spends its time (head
    ODE, trunk step, decoder: the profile that decides whether a fused head MLP is worth writing).
Every section is written to the JSON as soon as it is measured; a section that fails records its error.
"""
from __future__ import annotations

import gc
import json
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch

from pra.bench.common import JobRunner, StepRunner, check_target, time_interleaved_all, write_random_split
from pra.config import ExperimentConfig
from pra.flow import make_flow
from pra.io import write_json
from pra.model.network import Geometry, count_parameters
from pra.rollout import HeadODE, SamplerSettings, rollout
from pra.runtime import generator
from pra.checkpoint import build_network

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the SXM parts.
NOMINAL_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0, "B200": 2250.0}
FORMAT = 2  # of gpu.json: 2 = the job's iteration per mode, whole-image sampling (1: the step alone, prefixes)
TARGETS = {"mfu_pra": {"PRA-S": 0.40, "PRA-L": 0.45}, "pra_over_tf": 1.25, "images_per_s_pra_s": 55.0,
           "fid50k_minutes_pra_l": 20.0}
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
SPEED_OFF = {"fused_optimizer": "off", "foreach_ema": "off", "deferred_checks": "off"}
# mode -> (torch.compile of the modules, the rest of the speed section); 'fast' is what the job runs on CUDA
TRAINING_MODES = {"eager": (False, SPEED_OFF), "compiled": (True, SPEED_OFF),
                  "fast": (True, {k: "on" for k in SPEED_OFF})}


def per_gpu_batch(cfg: ExperimentConfig, scale: str) -> int:
    """The batch one GPU trains on in the experiment's jobs: train.batch_size over the scale's GPUs x nodes."""
    gpus = max(cfg.resource(scale, "train_gpus"), 1) * cfg.resource(scale, "train_nodes")
    return max(1, cfg.train.batch_size // gpus)


def bench_training_job(cfg: ExperimentConfig, scale: str, device, geom: Geometry, *, batch: int | None, reps: int,
                       window: int, peak: float | None, data_dir: Path, work_dir: Path,
                       modes: tuple[str, ...] = ("compiled", "fast"), profile: bool = False) -> dict:
    """The training job's iteration (pra.bench.common.JobRunner: batches from a prepared split on disk, the step,
    the log flushed once per window of `window` iterations) of latent_tf and pra in every mode, all built first
    and then timed interleaved (round after round, one window of each): median, min and max over `reps`
    windows. batch None: the experiment's per-GPU batch. FLOPs are counted once on the eager step (pra.flops);
    each runner's memory is the peak it adds over what was allocated before it was built."""
    from torch import _dynamo

    methods = ("latent_tf", "pra")
    batch = batch or per_gpu_batch(cfg, scale)
    base_cfg = cfg.replace(train={"batch_size": batch, "log_every": window},
                           data={"resolution": geom.resolution, "channels": geom.channels},
                           model={"patch_size": geom.patch_size})
    out = {"scale": scale, "batch": batch, "tokens": geom.num_tokens, "window": window, "reps": reps, "modes": {},
           "experiment_per_gpu_batch": per_gpu_batch(cfg, scale), "experiment_log_every": cfg.train.log_every}
    flops = {}
    for m in methods:
        r = StepRunner(base_cfg, scale, m, geom, batch, device=device)
        flops[m] = r.flops()
        out["params"] = count_parameters(r.net)
        del r
        free_memory(device)
    out["flops_per_step"] = flops
    _dynamo.reset()  # no graphs carried over from another scale
    _dynamo.utils.counters.clear()
    runners, first, memory = {}, {}, {}
    for mode in modes:
        compiled, speed = TRAINING_MODES[mode]
        for m in methods:
            base = memory_allocated(device)
            r = JobRunner(base_cfg.replace(speed=speed), scale, m, data_dir, work_dir / f"logs-{mode}",
                          device=device, compile=compiled, window=window)
            first[(mode, m)] = r.step() * window  # the first window (compilation happens here)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            r.step()
            memory[(mode, m)] = peak_memory(device) - base
            runners[(mode, m)] = r
    out["dynamo"] = {k: dict(v) for k, v in _dynamo.utils.counters.items() if k in ("stats", "graph_break")}
    times = time_interleaved_all(runners, warmup=0, reps=reps)
    for mode in modes:
        compiled, speed = TRAINING_MODES[mode]
        t = {m: times[(mode, m)] for m in methods}
        med = {m: statistics.median(v) for m, v in t.items()}
        row = {"speed": speed, "compiled": compiled, "step_seconds": med,
               "step_seconds_min": {m: min(v) for m, v in t.items()},
               "step_seconds_max": {m: max(v) for m, v in t.items()},
               "first_window_seconds": {m: first[(mode, m)] for m in methods},
               "peak_memory_bytes": {m: memory[(mode, m)] for m in methods},
               "pra_over_tf": med["pra"] / med["latent_tf"],
               "achieved_flops": {m: flops[m] / med[m] for m in methods}}
        if peak:
            row["mfu"] = {m: flops[m] / med[m] / peak for m in methods}
        out["modes"][mode] = row
    if len(modes) > 1:  # per round: the first mode's PRA window over the last mode's (the same round's drift)
        a, b = times[(modes[0], "pra")], times[(modes[-1], "pra")]
        ratios = sorted(x / y for x, y in zip(a, b))
        out["pra_mode_ratio"] = {"modes": [modes[0], modes[-1]], "median": statistics.median(ratios),
                                 "min": ratios[0], "max": ratios[-1]}
    if profile:
        try:
            out["profile"] = profile_steps(runners[(modes[-1], "pra")], device)
            out["profile_mode"] = modes[-1]
        except Exception as e:  # a profiler that cannot attach must not cost the timings
            out["profile"] = f"profiler failed: {type(e).__name__}: {e}"
    del runners, r
    free_memory(device)
    return out


def profile_steps(runner, device, steps: int = 3, rows: int = 15) -> str:
    """The step's operators by device time (torch.profiler), as text (a JobRunner: `steps` windows)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps if not hasattr(runner, "window") else 1):
            runner.step()
    return profile_table(prof, device, rows)


def profile_table(prof, device, rows: int) -> str:
    """A finished torch.profiler run's operators as text, by self device time on CUDA (the attribute's name
    differs across torch versions), by self CPU time elsewhere."""
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


def graphed_ode(flow, net, settings: SamplerSettings, device):
    """The head ODE as CUDA graphs on CUDA; elsewhere the same capture logic on the recorded-solve backend (a dry
    run's check of that logic, at eager speed)."""
    from pra.head_graph import GraphedHeadODE, RecordedSolve

    return GraphedHeadODE(flow, net.head, settings, backend=None if device.type == "cuda" else RecordedSolve())


def prepared_ode(net, flow, settings: SamplerSettings, labels: torch.Tensor, device, *, graphs: bool, seed: int):
    """The head ODE (graphed or eager) after two positions of this batch, and their seconds: for graphs the
    capture (once per job in practice), for the eager path a warm-up."""
    ode = graphed_ode(flow, net, settings, device) if graphs else HeadODE(flow, net.head, settings)
    free_memory(device)
    t = time.perf_counter()
    rollout(net, flow, labels, settings, generator(seed, device), ode=ode, positions=2)
    sync(device)
    return ode, time.perf_counter() - t


def time_rollout(net, flow, settings: SamplerSettings, batch: int, device, *, positions: int | None, graphs: bool,
                 seed: int = 5) -> dict:
    """One batch of the first `positions` positions (all when None): seconds and peak memory. CUDA graphs are
    captured before the timing (once per job in practice) on a two-position batch of the same size."""
    g = net.geometry
    n = positions or g.num_tokens
    labels = torch.arange(batch, device=device) % g.num_classes
    ode, capture = prepared_ode(net, flow, settings, labels, device, graphs=graphs, seed=seed)
    t = time.perf_counter()
    r = rollout(net, flow, labels, settings, generator(seed, device), ode=ode, positions=n)
    sync(device)
    sec = time.perf_counter() - t
    return {"batch": batch, "tokens": n, "seconds": sec, "capture_seconds": capture if graphs else 0.0,
            "warmup_seconds": 0.0 if graphs else capture,
            "images_per_second": batch / sec * n / g.num_tokens,
            "extrapolated_from_tokens": None if n == g.num_tokens else n,
            "peak_memory_bytes": peak_memory(device), "patches": r.patches.float()}


def whole_image_seconds(net, flow, settings: SamplerSettings, batch: int, device, *, graphs: bool, reps: int,
                        seed: int = 5) -> dict:
    """`reps` timings of one batch of whole images (every position), after two positions of the same batch (the
    graphs' capture, once per job in practice; for the eager path a warm-up)."""
    labels = torch.arange(batch, device=device) % net.geometry.num_classes
    ode, capture = prepared_ode(net, flow, settings, labels, device, graphs=graphs, seed=seed)
    seconds = []
    for k in range(reps):
        t = time.perf_counter()
        rollout(net, flow, labels, settings, generator(seed + k, device), ode=ode)
        sync(device)
        seconds.append(time.perf_counter() - t)
    med = statistics.median(seconds)
    return {"batch": batch, "reps": reps, "seconds": seconds, "median_seconds": med,
            "images_per_second": batch / med, "images_per_second_range": [batch / max(seconds), batch / min(seconds)],
            "capture_seconds": capture if graphs else 0.0, "warmup_seconds": 0.0 if graphs else capture,
            "peak_memory_bytes": peak_memory(device)}


SAMPLING_PARTS = ("head ODE", "trunk step", "decode to pixels")


class _Labelled:
    """A callable run inside a torch.profiler record_function range named `label` (profiling only)."""

    def __init__(self, fn, label: str):
        self.fn, self.label = fn, label

    def __call__(self, *args, **kwargs):
        from torch.profiler import record_function

        with record_function(f"pra: {self.label}"):
            return self.fn(*args, **kwargs)


def profile_sampling(net, flow, settings: SamplerSettings, batch: int, device, *, seed: int = 5,
                     rows: int = 12) -> dict:
    """Where one whole-image batch of the fast path spends its time: the rollout run once under torch.profiler,
    with the head ODE, the trunk's KV-cached step and the decoder to pixels each in a named range. shares: each
    part's device time (CUDA; CPU time elsewhere) over the rollout's, measured in one profiled run (the
    profiler's own overhead included); the rest is the loop's glue (noise draws, copies). The head ODE's share
    bounds what a fused head MLP could save."""
    from torch.profiler import ProfilerActivity, profile, record_function

    labels = torch.arange(batch, device=device) % net.geometry.num_classes
    ode, _ = prepared_ode(net, flow, settings, labels, device, graphs=True, seed=seed)
    step, to_pixels = net.trunk.step, net.to_pixels
    net.trunk.step, net.to_pixels = _Labelled(step, SAMPLING_PARTS[1]), _Labelled(to_pixels, SAMPLING_PARTS[2])
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with profile(activities=acts) as prof:
            with record_function("pra: rollout"):
                rollout(net, flow, labels, settings, generator(seed, device), ode=_Labelled(ode, SAMPLING_PARTS[0]))
            sync(device)
    finally:
        del net.trunk.step, net.to_pixels  # the instance attributes; the methods are the class's again
    avg = {e.key: e for e in prof.key_averages()}

    def total(e) -> float:
        if device.type == "cuda":
            for attr in ("device_time_total", "cuda_time_total"):
                v = getattr(e, attr, None)
                if v:
                    return float(v)
        return float(e.cpu_time_total)

    whole = total(avg["pra: rollout"]) if "pra: rollout" in avg else 0.0
    shares = {part: (total(avg[f"pra: {part}"]) / whole if whole and f"pra: {part}" in avg else None)
              for part in SAMPLING_PARTS}
    known = [v for v in shares.values() if v is not None]
    shares["other"] = max(0.0, 1.0 - sum(known)) if known else None
    return {"batch": batch, "time": "device" if device.type == "cuda" else "cpu", "shares": shares,
            "table": profile_table(prof, device, rows)}


def bench_sampling_speed(cfg: ExperimentConfig, scale: str, device, geom: Geometry, settings: SamplerSettings, *,
                         batches: list[int], eager_batch: int | None, reps: int, profile_batch: int | None = None) -> dict:
    """Whole images, measured (never extrapolated): the fast path (bf16 weights, each position's head ODE as a
    CUDA graph) at every batch in `batches`, and the eager fp32 sampler at `eager_batch` beside the fast path at
    the same batch (the speed-up compares equal batches); `reps` repetitions each, median and range. profile_batch:
    also where one batch of that size spends its time (profile_sampling)."""
    out = {"scale": scale, "settings": {"ode_steps": settings.ode_steps, "solver": settings.solver,
                                        "cfg_scale": settings.cfg_scale, "cfg_schedule": settings.cfg_schedule},
           "fast": [], "eager_fp32": None, "same_batch_speedup": None}
    net16, flow = sampling_net(cfg, scale, device, geom, torch.bfloat16)
    out["params"] = count_parameters(net16)
    for b in sorted(set(batches) | ({eager_batch} if eager_batch else set())):
        try:
            r = whole_image_seconds(net16, flow, settings, b, device, graphs=True, reps=reps)
        except torch.cuda.OutOfMemoryError:
            r = {"batch": b, "out_of_memory": True}
        out["fast"].append(r)
        free_memory(device)
    if profile_batch:
        try:
            out["profile"] = profile_sampling(net16, flow, settings, profile_batch, device)
        except Exception as e:  # a profiler that cannot attach must not cost the timings
            out["profile"] = {"error": f"profiler failed: {type(e).__name__}: {e}"}
        free_memory(device)
    del net16
    free_memory(device)
    if eager_batch:
        net32, _ = sampling_net(cfg, scale, device, geom, torch.float32)
        try:
            out["eager_fp32"] = whole_image_seconds(net32, flow, settings, eager_batch, device, graphs=False,
                                                    reps=reps)
            fast = next(f for f in out["fast"] if f["batch"] == eager_batch and "median_seconds" in f)
            out["same_batch_speedup"] = out["eager_fp32"]["median_seconds"] / fast["median_seconds"]
        except (torch.cuda.OutOfMemoryError, StopIteration):
            out["eager_fp32"] = {"batch": eager_batch, "out_of_memory": True}
        del net32
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
    out["bf16_over_seed_spread"] = out["bf16_fast_vs_fp32"]["mean_abs"] / out["fp32_seed_vs_seed"]["mean_abs"]
    free_memory(device)
    return out


# ---- the run -------------------------------------------------------------------------------------------
def run_gpu_bench(cfg: ExperimentConfig, out_dir: str | Path, *, device: str = "cuda",
                  scales: tuple[str, ...] = ("PRA-S", "PRA-L"), batch: int | None = None, reps: int = 3,
                  window: int = 10, modes: tuple[str, ...] = ("compiled", "fast"),
                  sample_scales: tuple[str, ...] = ("PRA-S", "PRA-L"), sample_batches: tuple[int, ...] | None = None,
                  eager_batch: int | None = 256, agreement_batch: int = 16, eager_tokens: int = 32,
                  sections: tuple[str, ...] = ("training", "sampling", "agreement"),
                  geometry: Geometry = IMAGENET, settings: SamplerSettings = SAMPLE_SETTINGS,
                  work_dir: str | Path | None = None, keep: bool = False, profile_sampling: bool = True) -> dict:
    """Sections in this order (a failing one records its error, the others still run): the training job's
    iteration per scale (batch None: the experiment's per-GPU batch), whole-image sampling per scale (at
    `sample_batches`, default the experiment's sample.batch_size, and the eager sampler at `eager_batch`), the
    sampler's agreement on random weights; profile_sampling: where one batch of the first sampling scale spends its
    time (after its timings). The random prepared split for training lives in `work_dir`. `keep`:
    the rows of sections and scales not run now are kept from out_dir/gpu.json when it was written by this format
    on the same card, torch, geometry and sampler settings (a benchmark split over several commands)."""
    import tempfile

    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sample_batches = tuple(sample_batches or (cfg.sample.batch_size,))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    peak = nominal_peak(name) if device.type == "cuda" else None
    res = {"machine": {"device": name, "torch": torch.__version__, "platform": platform.platform(),
                       "nominal_bf16_dense_flops": peak,
                       "memory_bytes": torch.cuda.get_device_properties(device).total_memory
                       if device.type == "cuda" else None},
           "geometry": {"resolution": geometry.resolution, "channels": geometry.channels,
                        "patch_size": geometry.patch_size, "tokens": geometry.num_tokens},
           "experiment": {"name": cfg.name, "train_batch_size": cfg.train.batch_size,
                          "sample_batch_size": cfg.sample.batch_size, "precision": cfg.train.precision},
           "targets": TARGETS, "training": [], "sampling": [], "agreement": [], "errors": []}
    if device.type == "cuda":  # (fp32 matmuls keep PyTorch's default: full fp32, no TF32)
        res["machine"]["matmul_bf16_flops_measured"] = matmul_peak_bf16(device)
    res["format"] = FORMAT
    res["sampling_settings"] = {"ode_steps": settings.ode_steps, "solver": settings.solver,
                                "cfg_scale": settings.cfg_scale, "cfg_schedule": settings.cfg_schedule}
    earlier = out_dir / "gpu.json"
    if keep and earlier.exists():  # the sections not run now, from an earlier run of this format on the same
        old = json.loads(earlier.read_text())  # card, torch, geometry and sampler settings
        same = ("format", "geometry", "sampling_settings", "experiment")
        if (old.get("machine", {}).get("device"), old.get("machine", {}).get("torch")) == (name, torch.__version__) \
                and all(old.get(k) == res[k] for k in same):
            now = {"training": set(scales) if "training" in sections else set(),
                   "sampling": set(sample_scales) if "sampling" in sections else set(),
                   "agreement": {sample_scales[0]} if "agreement" in sections else set()}
            for k in now:  # every row of a scale not measured now
                res[k] = [row for row in old.get(k, []) if row.get("scale") not in now[k]]
            res["errors"] = [e for e in old.get("errors", []) if e["section"].split()[0] not in sections]
            res["kept_from_earlier_run"] = {k: [row.get("scale") for row in res[k]] for k in now}

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

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp = Path(tmp)
        if "training" in sections:
            batches = [batch or per_gpu_batch(cfg, s) for s in scales]
            data = write_random_split(tmp / "data", resolution=geometry.resolution, channels=geometry.channels,
                                      count=max(256, 4 * max(batches)), num_classes=geometry.num_classes)
            for i, s in enumerate(scales):
                section(f"training {s}", lambda s=s, i=i: bench_training_job(
                    cfg, s, device, geometry, batch=batch, reps=reps, window=window, peak=peak, data_dir=data,
                    work_dir=tmp, modes=modes, profile=i == 0), res["training"])
    if "sampling" in sections:
        for i, s in enumerate(sample_scales):
            section(f"sampling {s}", lambda s=s, i=i: bench_sampling_speed(
                cfg, s, device, geometry, settings, batches=list(sample_batches), eager_batch=eager_batch,
                reps=reps, profile_batch=sample_batches[0] if i == 0 and profile_sampling else None), res["sampling"])
    if "agreement" in sections:
        section("agreement", lambda: bench_agreement(cfg, sample_scales[0], device, geometry, settings,
                                                     batch=agreement_batch, eager_tokens=eager_tokens),
                res["agreement"])
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
        lines += ["## Training: the job's iteration (bf16 autocast per the experiment; batches read from a prepared "
                  "split on disk, the step, EMA, logging at its cadence)", "",
                  "Modes: eager (no speed options); compiled (modules compiled, plain AdamW, EMA loop, host check "
                  "every step); fast (compiled + fused AdamW, multi-tensor EMA, deferred checks: what a CUDA job "
                  "runs by default). Every mode and method is built first, then timed round by round (one window of "
                  "each per round). Seconds per iteration: median [min, max] over the windows. Random images on "
                  "local disk (page cache), one process (no DDP, no all-reduce).", "",
                  "| scale | params | batch (experiment's per GPU) | mode | TF step | PRA step | PRA/TF | MFU (PRA) | "
                  "MFU (TF) | peak memory TF / PRA | first window TF / PRA |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        order = {"eager": 0, "compiled": 1, "fast": 2}
        t0 = r["training"][0]
        lines[-2:-2] = [f"A window is {t0['window']} iterations with one log flush (the experiment flushes every "
                        f"{t0['experiment_log_every']}: the benchmark syncs the host more often than the job).", ""]
        for t in r["training"]:
            for mode, v in sorted(t["modes"].items(), key=lambda kv: order.get(kv[0], 9)):
                s, lo, hi = v["step_seconds"], v["step_seconds_min"], v["step_seconds_max"]
                mem, f, mfu = v["peak_memory_bytes"], v["first_window_seconds"], v.get("mfu", {})
                cell = {m: f"{s[m] * 1e3:.1f} [{lo[m] * 1e3:.1f}, {hi[m] * 1e3:.1f}] ms" for m in s}
                lines.append(f"| {t['scale']} | {t['params'] / 1e6:.1f}M | {t['batch']} "
                             f"({t['experiment_per_gpu_batch']}) | {mode} | {cell['latent_tf']} | {cell['pra']} | "
                             f"{v['pra_over_tf']:.2f} | {_pct(mfu.get('pra'))} | {_pct(mfu.get('latent_tf'))} | "
                             f"{mem['latent_tf'] / 2 ** 30:.1f} / {mem['pra'] / 2 ** 30:.1f} GiB | "
                             f"{f['latent_tf']:.1f} / {f['pra']:.1f} s |")
        lines += ["", "Targets (the job's default mode on CUDA, 'fast'):"]
        for t in r["training"]:
            v = t["modes"].get("fast")
            if not v:
                continue
            goal = TARGETS["mfu_pra"].get(t["scale"])
            mfu = v.get("mfu", {}).get("pra")
            if goal is not None and mfu is not None:
                lines.append(f"- {t['scale']}: MFU of the PRA iteration {_pct(mfu)}: "
                             f"{check_target(mfu, ('>=', goal), lambda b: f'{b * 100:.0f}%')}")
            lines.append(f"- {t['scale']}: PRA/TF {v['pra_over_tf']:.2f}: "
                         f"{check_target(v['pra_over_tf'], ('<=', TARGETS['pra_over_tf']))}")
            q = t.get("pra_mode_ratio")
            if q:
                lines.append(f"- {t['scale']}: PRA iteration, {q['modes'][0]} / {q['modes'][1]} per round: "
                             f"{q['median']:.2f} [{q['min']:.2f}, {q['max']:.2f}] over {t['reps']} rounds")
            d = t.get("dynamo", {})
            if d:
                lines.append(f"- {t['scale']}: torch.compile counters {json.dumps(d, sort_keys=True)}")
    if r["sampling"]:
        st = r["sampling"][0]["settings"]
        lines += ["", f"## Sampling, whole images ({st['ode_steps']} {st['solver']} steps per token, CFG "
                  f"{st['cfg_scale']} {st['cfg_schedule']} schedule; 50 heun, 3.0 linear are the imagenet256 settings)",
                  "", "Every row times every position of the batch (nothing extrapolated); median and range of the "
                  "repetitions. Fast path: bf16 weights, fp32 ODE state, each position's head ODE replayed as one CUDA "
                  "graph (captured once before the timing). Eager: fp32, no graphs, at the same batch as one fast row, "
                  "after a two-position warm-up.",
                  "", "| scale | path | batch | reps | seconds per batch (median) | images/s [range] | CUDA-graph "
                  "capture | peak memory |", "|---|---|---|---|---|---|---|---|"]
        for s in r["sampling"]:
            rows = [("fast", f) for f in s["fast"]] + ([("eager fp32", s["eager_fp32"])] if s["eager_fp32"] else [])
            for path, f in rows:
                if f.get("out_of_memory"):
                    lines.append("| " + " | ".join([s["scale"], path, str(f["batch"]), "-", "out of memory", "-",
                                                    "-", "-"]) + " |")
                    continue
                lo, hi = f["images_per_second_range"]
                lines.append(f"| {s['scale']} | {path} | {f['batch']} | {f['reps']} | {f['median_seconds']:.2f} s | "
                             f"{f['images_per_second']:.1f} [{lo:.1f}, {hi:.1f}] | {f['capture_seconds']:.1f} s | "
                             f"{f['peak_memory_bytes'] / 2 ** 30:.1f} GiB |")
        configured = r.get("experiment", {}).get("sample_batch_size")
        lines.append("")
        for s in r["sampling"]:
            if s["same_batch_speedup"]:
                lines.append(f"- {s['scale']}: fast / eager at batch {s['eager_fp32']['batch']}: "
                             f"{s['same_batch_speedup']:.1f}x")
            f = next((f for f in s["fast"] if f["batch"] == configured and "median_seconds" in f), None)
            if f:
                minutes = 50000 / f["images_per_second"] / 60
                line = (f"- {s['scale']}: {f['images_per_second']:.1f} images/s at the configured batch {configured}: "
                        f"an FID-50K sample takes {minutes:.1f} min on this card")
                if s["scale"] == "PRA-S":
                    goal = TARGETS["images_per_s_pra_s"]
                    line += f" ({check_target(f['images_per_second'], ('>=', goal), lambda g: f'{g:.0f} images/s')})"
                if s["scale"] == "PRA-L":
                    line += f" ({check_target(minutes, ('<=', TARGETS['fid50k_minutes_pra_l']), lambda g: f'{g:.0f} min')})"
                lines.append(line)
    if r["agreement"]:
        a = r["agreement"][0]
        lines += ["", f"## Agreement ({a['scale']}, random weights with non-zero head outputs, batch {a['batch']}, "
                  f"{a['tokens']} tokens, pixels in [-1, 1])", "",
                  "| pair (same noise unless stated) | mean abs | max abs |", "|---|---|---|"]
        for k, label in (("graph_vs_eager_fp32", "CUDA graph vs eager, fp32"),
                         ("bf16_fast_vs_fp32", "fast path (bf16 + graph) vs fp32"),
                         ("fp32_seed_vs_seed", "fp32, two different seeds (the spread)")):
            lines.append(f"| {label} | {a[k]['mean_abs']:.2e} | {a[k]['max_abs']:.2e} |")
        lines += ["", f"- The fast path's mean pixel change is {a['bf16_over_seed_spread']:.3f} of the seed-to-seed "
                  "change (same noise against another noise: a yardstick, not a test; random weights: "
                  "`python -m pra bench-precision` measures a trained model)"]
    for s in r["sampling"]:
        pr = s.get("profile")
        if pr and pr.get("shares"):
            sh = pr["shares"]
            parts = ", ".join(f"{k} {_pct(sh.get(k))}" for k in SAMPLING_PARTS + ("other",) if sh.get(k) is not None)
            lines += ["", f"## Where the sampling time goes: {s['scale']}, fast path, one batch of {pr['batch']} "
                      f"(torch.profiler, {pr['time']} time)", "",
                      f"Share of the rollout's {pr['time']} time: {parts} (one profiled run, the profiler's overhead "
                      "included). The head ODE's share bounds what a fused head MLP could save.", "",
                      "```", pr["table"].rstrip(), "```"]
        elif pr:
            lines += ["", f"- {s['scale']}: sampling profile: {pr.get('error')}"]
    for t in r["training"]:
        if t.get("profile"):
            lines += ["", f"## Where the time goes: the PRA iteration at {t['scale']}, mode "
                      f"{t.get('profile_mode', 'compiled')} (one window, torch.profiler)", "",
                      "```", t["profile"].rstrip(), "```"]
    if r["errors"]:
        lines += ["", "## Sections that failed", ""] + [f"- {e['section']}: {e['error']}" for e in r["errors"]]
    return "\n".join(lines) + "\n"
