"""Published reference numbers (class-conditional ImageNet 256x256, FID-50K), with their sources.

These rows are facts from the papers, not measurements of this pipeline; every table that prints them
says so in its source column.
"""
from __future__ import annotations

# (model, family, params in millions, FID-50K, IS or None, source)
IMAGENET256 = [
    ("PRA-S", "pixel AR (PRA)", 135, 2.58, None, "PRA paper (arXiv 2606.27978)"),
    ("PRA-B", "pixel AR (PRA)", 250, 2.21, None, "PRA paper (arXiv 2606.27978)"),
    ("PRA-L", "pixel AR (PRA)", 511, 1.94, None, "PRA paper (arXiv 2606.27978)"),
    ("FARMER", "pixel AR", 1900, 3.60, 269.2, "FARMER (arXiv 2510.23588), as cited by PRA"),
    ("JetFormer", "pixel AR", 2800, 6.64, None, "JetFormer, as cited by PRA"),
    ("FractalMAR-H", "pixel AR", 848, 6.15, None, "Fractal generative models (arXiv 2502.17437)"),
    ("JiT-B/16", "pixel diffusion", 131, 3.66, None, "JiT (arXiv 2511.13720)"),
    ("JiT-L/16", "pixel diffusion", 459, 2.36, None, "JiT (arXiv 2511.13720)"),
    ("JiT-H/16", "pixel diffusion", 953, 1.86, None, "JiT (arXiv 2511.13720)"),
    ("PixelFlow-XL/4", "pixel flow", 677, 1.98, None, "PixelFlow (arXiv 2504.07963)"),
    ("PixNerd-XL/16", "pixel diffusion", 700, 2.15, None, "PixNerd (arXiv 2507.23268)"),
    ("ADM", "pixel diffusion", 554, 4.59, None, "ADM, as cited by PRA"),
    ("MAR-B", "latent AR (reference)", 208, 2.31, None, "MAR, as cited by PRA"),
]

PRA_L_LINEAR_PROBE_TOP1 = 68.80  # percent, ImageNet-1K, PRA paper
