"""Parallel Rollout Approximation for pixel-space autoregressive image generation: the pipeline package."""

__version__ = "0.1.0"
