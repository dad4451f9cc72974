"""`python -m pra bench`: the GPU benchmark (pra.bench.gpu) on a CUDA machine, the CPU one (pra.bench.training)
otherwise."""
from __future__ import annotations

from pathlib import Path

import torch


def bench_job(args):
    """The GPU benchmark on a CUDA machine (or --device cuda), the CPU one otherwise."""
    cfg = args.cfg
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        from pra.bench.gpu import run_gpu_bench

        run_gpu_bench(cfg, args.out, scales=tuple(args.gpu_scales), batch=args.gpu_batch, reps=args.reps,
                      sample_scales=tuple(args.gpu_sample_scales), sample_batches=tuple(args.gpu_sample_batches))
        print((Path(args.out) / "gpu.md").read_text())
        return
    from pra.bench.training import run_bench

    run_bench(cfg, args.out, threads=args.threads, reps=args.reps, scales=tuple(args.scales),
              sample_scales=tuple(args.sample_scales), sample_ode_steps=args.sample_ode_steps)
    print((Path(args.out) / "results.md").read_text())
