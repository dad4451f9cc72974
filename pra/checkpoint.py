"""The checkpoint format, in one place: how a network is built, the wrapper that carries the EMA copy, the
final `model.pt` and the resumable `state.pt` of training, and loading both.

Inference (sampling, evaluation, the diagnostics, the benchmark) rebuilds a model from its `model.pt`
alone. Both files hold the run's config exactly as the training job received it (`config`: the sections
the train command reads, nothing padded with defaults), its scale, method, seed and data geometry.
A `state.pt` is resumed only by a job with the same config, scale, method and seed (`load_resumable`).
"""
from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pra.config import ConfigError, ExperimentConfig, from_dict
from pra.data.dataset import PreparedSplit
from pra.model.network import Geometry, PRANetwork
from pra.io import save_torch
from pra.model.scales import get_scale

FORMAT = 2  # 2: `config` is the job's config as received (format 1 padded it with defaults)
META_KEYS = ("step", "scale", "method", "seed", "params", "mlflow_run_id")


class TrainedModel(nn.Module):
    """The network and its EMA copy; both are part of state_dict."""

    def __init__(self, net: PRANetwork):
        super().__init__()
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)

    @torch.no_grad()
    def update_ema(self, decay: float, foreach: bool = False) -> None:
        """ema <- lerp(ema, net, 1 - decay) per parameter; `foreach`: as one multi-tensor kernel (the same
        arithmetic per element)."""
        if foreach:
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.net.parameters()), 1.0 - decay)
            return
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


def run_record(config: dict, *, scale: str, method: str, seed: int, geometry: Geometry, params: int,
               code_hash: str | None = None, data: str | None = None) -> dict:
    """What identifies a run in its checkpoints: its config as the job received it, scale, method, seed,
    data geometry, parameter count, the hash of the training code (pra.codehash) and a digest of the prepared
    data's manifest."""
    return {"format": FORMAT, "config": config, "scale": scale, "method": method, "seed": seed,
            "geometry": asdict(geometry), "params": params, "code_hash": code_hash, "data": data}


MANIFEST_RUN_FIELDS = ("source", "reused_shards")  # where the raw folder was and how much a re-run reused
SPLIT_RUN_FIELDS = ("not_images", "not_images_first")  # files of the raw folder that were not read


def data_digest(data_dir: str | Path) -> str:
    """sha256 of the prepared data's manifest (its shards with the key of their inputs, counts, settings and
    loader), without the fields that describe the raw folder or the preparing run rather than the data (where
    the folder was, how many shards a re-run reused, which files were not images): the same data prepared again,
    or from the same folder mounted elsewhere, has the same digest."""
    import hashlib
    import json

    d = Path(data_dir)
    d = d if d.name == "manifest.json" else d / "manifest.json"
    m = {k: v for k, v in json.loads(d.read_text()).items() if k not in MANIFEST_RUN_FIELDS}
    m["splits"] = {name: {k: v for k, v in split.items() if k not in SPLIT_RUN_FIELDS}
                   for name, split in m.get("splits", {}).items()}
    return hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:16]


def save_model(path: str | Path, record: dict, model: TrainedModel, *, step: int, mlflow_run_id: str | None) -> None:
    """The final model.pt (network + EMA), written atomically."""
    save_torch({**record, "model": model.state_dict(), "step": step, "mlflow_run_id": mlflow_run_id}, path)


def save_state(path: str | Path, record: dict, step_state: dict, *, step: int, rng: dict, log_window: dict,
               mlflow_run_id: str | None) -> None:
    """A resumable state.pt: the final file's content plus optimiser, schedule, RNG states and the
    unfinished log window, written atomically."""
    save_torch({**record, **step_state, "step": step, "rng": rng, "log_window": log_window,
                "mlflow_run_id": mlflow_run_id}, path)


def differences(stored, current, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings (missing on one side included)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(stored) | set(current), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in stored or k not in current:
                out.append(key)
            else:
                out += differences(stored[k], current[k], key)
        return out
    return [] if stored == current else [prefix or "<root>"]


class CorruptCheckpointError(RuntimeError):
    pass


def read(path: str | Path, map_location="cpu") -> dict:
    """torch.load of a checkpoint; an unreadable file raises CorruptCheckpointError naming it (the pipeline
    writes checkpoints atomically, so a damaged one was damaged afterwards: by a disk, a copy, an edit)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, OSError, ... by damage
        todo = "the run then trains from the start" if Path(path).name == "state.pt" else "then rerun its train job"
        raise CorruptCheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it: {todo}") \
            from e


def load_resumable(path: str | Path, record: dict) -> dict:
    """Load state.pt for a resume; ConfigError naming the keys if it was written by another run or config."""
    ck = read(path)
    if ck.get("format") != FORMAT:
        raise ConfigError(f"{path} was written in checkpoint format {ck.get('format', 1)} (this code writes "
                          f"{FORMAT}); delete it to train this run from the start")
    stored = {k: ck.get(k) for k in ("config", "scale", "method", "seed", "geometry", "code_hash", "data")}
    keys = differences(stored, {k: record[k] for k in stored})
    if keys:
        def show(d, key):
            for part in key.split("."):
                d = d.get(part, "<absent>") if isinstance(d, dict) else d
            return d

        detail = "; ".join(f"{k}: {show(stored, k)!r} in state.pt, {show(record, k)!r} now" for k in keys[:8])
        raise ConfigError(f"{path} was written by a run with a different configuration, code or data ({detail}"
                          f"{'; ...' if len(keys) > 8 else ''}). Restore them to resume, or delete "
                          f"{path} to train this run from the start.")
    return ck


def stored_config(ck: dict) -> ExperimentConfig:
    """The typed config of a checkpoint (sections the job did not read take their defaults)."""
    return from_dict(ck["config"], cross_checks=False)


def load_trained(path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True):
    """Load a final model.pt; returns (network in eval mode, config, checkpoint metadata)."""
    ck = read(path, device)
    cfg = stored_config(ck)
    geom = Geometry(**ck["geometry"])
    model = TrainedModel(build_network(cfg, ck["scale"], ck["method"], geom))
    model.load_state_dict(ck["model"])
    net = (model.ema if use_ema else model.net).to(device).eval()
    return net, cfg, {k: ck[k] for k in META_KEYS}
