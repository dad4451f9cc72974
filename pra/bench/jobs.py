"""`python -m pra bench`: the GPU benchmark (pra.bench.gpu) on a CUDA machine, the CPU one (pra.bench.training)
otherwise."""
from __future__ import annotations

from pathlib import Path

import torch


def bench_job(args):
    """The GPU benchmark on a CUDA machine (or --device cuda), the CPU one otherwise."""
    cfg = args.cfg
    if args.matmul:
        from pra.bench.common import matmul_peak

        print(f"fp32 matmul, {args.threads} thread(s), 2048^3: {matmul_peak(args.threads) / 1e9:.0f} GFLOP/s "
              f"(torch {torch.__version__})")
        return
    if args.gpu_dry_run or args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        from dataclasses import replace

        from pra.bench.gpu import SAMPLE_SETTINGS, run_gpu_bench
        from pra.model.network import Geometry

        res, ch, patch, classes = (int(v) for v in args.gpu_geometry.split(","))
        run_gpu_bench(cfg, args.out, device="cpu" if args.gpu_dry_run else "cuda", scales=tuple(args.gpu_scales), batch=args.gpu_batch, reps=args.gpu_reps,
                      window=args.gpu_window, modes=tuple(args.gpu_modes), sample_scales=tuple(args.gpu_sample_scales),
                      sample_batches=tuple(args.gpu_sample_batches) if args.gpu_sample_batches else None,
                      eager_batch=args.gpu_eager_batch or None, sections=tuple(args.gpu_sections),
                      keep=args.gpu_keep, geometry=Geometry(res, ch, patch, classes),
                      profile_sampling=bool(args.gpu_profile_sampling),
                      settings=replace(SAMPLE_SETTINGS, ode_steps=args.gpu_ode_steps))
        print((Path(args.out) / "gpu.md").read_text())
        return
    from pra.bench.training import run_bench

    run_bench(cfg, args.out, threads=args.threads, reps=args.reps, scales=tuple(args.scales),
              sample_scales=tuple(args.sample_scales), sample_ode_steps=args.sample_ode_steps)
    print((Path(args.out) / "results.md").read_text())
