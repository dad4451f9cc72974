"""Benchmarks: ratios measured side by side in one run (training.py: steps, memory, the KV cache, MFU;
preparation.py: the data preparation)."""
