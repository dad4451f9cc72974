"""FLOPs of the training step, attention included, on any device.

torch.utils.flop_counter counts matrix products everywhere but has no formula for the CPU kernel of
scaled-dot-product attention (`_scaled_dot_product_flash_attention_for_cpu`), so a step counted on the CPU
would miss every attention FLOP that the same step on a GPU is counted with. `counter()` adds torch's own
SDPA formulas (the ones its CUDA kernels are counted with: 4·B·H·L·S·d forward, 2.5 times that backward,
no discount for the causal mask) for the CPU kernels, so the CPU count equals the GPU's.
"""
from __future__ import annotations

import torch
import torch.utils.flop_counter as fc


def _sdpa(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_flop_count(q_shape, k_shape, v_shape)


def _sdpa_backward(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_backward_flop_count(grad_shape, q_shape, k_shape, v_shape)


def counter() -> fc.FlopCounterMode:
    """A FlopCounterMode that also counts the CPU attention kernels."""
    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward}
    return fc.FlopCounterMode(display=False, custom_mapping=mapping)
