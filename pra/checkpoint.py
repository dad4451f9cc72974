"""A trained model on disk: how its network is built, the wrapper that carries the EMA copy, and loading.

Inference (sampling, evaluation, the diagnostics, the benchmark) rebuilds a model from its `model.pt`
alone: the checkpoint holds the config, scale, method and geometry it was trained with.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from pra.config import ExperimentConfig, from_dict
from pra.data.dataset import PreparedSplit
from pra.model.network import Geometry, PRANetwork
from pra.model.scales import get_scale

META_KEYS = ("step", "scale", "method", "seed", "params", "mlflow_run_id")


class TrainedModel(nn.Module):
    """The network and its EMA copy; both are part of state_dict."""

    def __init__(self, net: PRANetwork):
        super().__init__()
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, p in zip(self.ema.parameters(), self.net.parameters()):
            e.lerp_(p, 1.0 - decay)


def build_network(cfg: ExperimentConfig, scale: str, method: str, geometry: Geometry,
                  init_seed: int = 0) -> PRANetwork:
    """Build the network with a deterministic initialisation that leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return PRANetwork(get_scale(scale), cfg.model, geometry, method)


def geometry_of(cfg: ExperimentConfig, data: PreparedSplit) -> Geometry:
    if data.resolution != cfg.data.resolution or data.channels != cfg.data.channels:
        raise ValueError(f"prepared data is {data.resolution}px/{data.channels}ch but the config asks for "
                         f"{cfg.data.resolution}px/{cfg.data.channels}ch: re-run prepare")
    return Geometry(cfg.data.resolution, cfg.data.channels, cfg.model.patch_size, data.num_classes)


def load_trained(path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True):
    """Load a final model.pt; returns (network in eval mode, config, checkpoint metadata)."""
    ck = torch.load(path, map_location=device, weights_only=False)
    cfg = from_dict(ck["config"])
    geom = Geometry(**ck["geometry"])
    model = TrainedModel(build_network(cfg, ck["scale"], ck["method"], geom))
    model.load_state_dict(ck["model"])
    net = (model.ema if use_ema else model.net).to(device).eval()
    return net, cfg, {k: ck[k] for k in META_KEYS}
