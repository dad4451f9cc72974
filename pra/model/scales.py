"""Registry of named model scales.

The paper publishes only the totals for PRA-S/B/L (135M, 250M, 511M parameters at ImageNet 256,
patch 16, z 16). Every width and depth below is a reconstruction chosen to land within 3% of those
totals; `python -m pra params` prints the counts. The tiny scales are for CPU runs and tests.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    width: int
    depth: int
    heads: int
    enc_width: int
    enc_depth: int
    enc_heads: int
    dec_width: int
    dec_depth: int
    head_width: int
    head_depth: int
    paper_params: int | None = None   # published total, if any
    note: str = ""


SCALES: dict[str, Scale] = {
    # CPU scales for the embedded default (reconstruction: sized for minutes on 2 cores).
    "tiny-XS": Scale(32, 2, 2, 32, 1, 2, 32, 1, 32, 1, note="tests"),
    "tiny-S": Scale(64, 4, 2, 32, 1, 1, 64, 2, 64, 2, note="default experiment"),
    "tiny-L": Scale(128, 4, 4, 64, 2, 2, 128, 2, 128, 2, note="default experiment"),
    # Paper scales: totals are published, the shapes are a reconstruction.
    "PRA-S": Scale(768, 12, 12, 384, 4, 6, 768, 3, 768, 6, paper_params=135_000_000,
                   note="shape reconstructed; 133.8M at ImageNet 256 (-0.9%)"),
    "PRA-B": Scale(1024, 13, 16, 512, 4, 8, 1024, 3, 1024, 6, paper_params=250_000_000,
                   note="shape reconstructed; 245.2M at ImageNet 256 (-1.9%)"),
    "PRA-L": Scale(1280, 20, 20, 640, 4, 10, 1280, 3, 1280, 6, paper_params=511_000_000,
                   note="shape reconstructed; 514.4M at ImageNet 256 (+0.7%)"),
}


def get_scale(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise KeyError(f"unknown scale {name!r}; known: {sorted(SCALES)}") from None
