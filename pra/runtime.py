"""Device, threads and seeding; no global RNG is used anywhere in the package."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() \
            else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available (use device: auto or cpu)")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def set_threads(n: int) -> None:
    torch.set_num_threads(max(1, n))


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def cpu_kernels() -> str:
    """What decides which floating-point kernels torch runs on this CPU, beyond its model name (two machines sold
    as one model name can differ): the CPU family, model and stepping numbers and torch's vector capability
    (AVX2, AVX512, ...), e.g. 'family 25 model 1 stepping 1, torch AVX2'."""
    from pathlib import Path

    import torch

    ids = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model", "stepping") and key not in ids:
                ids[key] = value.strip()
            if not line.strip() and ids:
                break
    except OSError:
        pass
    parts = [f"{k.replace('cpu ', '')} {ids[k]}" for k in ("cpu family", "model", "stepping") if k in ids]
    try:
        parts.append(f"torch {torch.backends.cpu.get_cpu_capability()}")
    except (AttributeError, RuntimeError):
        pass
    return ", ".join(parts)


def cpu_model() -> str:
    """The CPU's model name (floating-point results depend on it: see docs/pipeline.md)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
