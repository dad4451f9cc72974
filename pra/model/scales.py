"""Registry of named model scales.

The paper publishes only the totals for PRA-S/B/L (135M, 250M, 511M parameters at ImageNet 256,
patch 16, z 16). Every width and depth below is a reconstruction chosen to land within 3% of those
totals; `python -m pra params` prints the counts. The tiny scales are for CPU runs and tests.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
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
    "tiny-XS": Scale(width=32, depth=2, heads=2,
                     enc_width=32, enc_depth=1, enc_heads=2,
                     dec_width=32, dec_depth=1, head_width=32, head_depth=1, note="tests"),
    "tiny-S": Scale(width=64, depth=4, heads=2,
                    enc_width=32, enc_depth=1, enc_heads=1,
                    dec_width=64, dec_depth=2, head_width=64, head_depth=2, note="default experiment"),
    "tiny-L": Scale(width=128, depth=4, heads=4,
                    enc_width=64, enc_depth=2, enc_heads=2,
                    dec_width=128, dec_depth=2, head_width=128, head_depth=2, note="experiments/scaling.yaml"),
    # Paper scales: totals are published, the shapes are a reconstruction.
    "PRA-S": Scale(width=768, depth=12, heads=12,
                   enc_width=384, enc_depth=4, enc_heads=6,
                   dec_width=768, dec_depth=3, head_width=768, head_depth=6, paper_params=135_000_000,
                   note="shape reconstructed; 133.8M at ImageNet 256 (-0.9%)"),
    "PRA-B": Scale(width=1024, depth=13, heads=16,
                   enc_width=512, enc_depth=4, enc_heads=8,
                   dec_width=1024, dec_depth=3, head_width=1024, head_depth=6, paper_params=250_000_000,
                   note="shape reconstructed; 245.2M at ImageNet 256 (-1.9%)"),
    "PRA-L": Scale(width=1280, depth=20, heads=20,
                   enc_width=640, enc_depth=4, enc_heads=10,
                   dec_width=1280, dec_depth=3, head_width=1280, head_depth=6, paper_params=511_000_000,
                   note="shape reconstructed; 514.4M at ImageNet 256 (+0.7%)"),
}


def get_scale(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise KeyError(f"unknown scale {name!r}; known: {sorted(SCALES)}") from None
