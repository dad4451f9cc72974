"""Training loop: one (scale, method, seed) of an experiment.

AdamW, linear warm-up then constant or cosine, EMA (inside the model's state_dict), gradient clipping,
abort on a non-finite loss, bf16 autocast and torch.compile of the modules on CUDA (the config's speed
section). A resumable checkpoint (model + EMA, optimiser, scheduler, step, RNG states, MLflow run id) is
written atomically every `ckpt_every` steps to
`state.pt`; the final `model.pt` is written only when training completes, so a downstream rule never
sees a partial model. Re-running after an interruption continues from `state.pt`.
"""
from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pra.checkpoint import TrainedModel, build_network, geometry_of
from pra.config import ConfigError, ExperimentConfig
from pra import distributed as D
from pra.data.dataset import PreparedSplit
from pra.io import atomic_path, save_torch, write_json
from pra.model.network import PRANetwork, count_parameters
from pra.model.patches import patchify, to_unit
from pra.noise import Noise
from pra.objective import Objective
from pra.optim import make_optimizer, make_scheduler
from pra.runtime import generator, resolve_device, set_threads
from pra.stop import Stop, StopSignals
from pra import speed, tracking


class LossModule(nn.Module):
    """net + objective behind one forward(), so that DistributedDataParallel sees the whole step."""

    def __init__(self, net: PRANetwork, objective: Objective):
        super().__init__()
        self.net = net
        self.objective = objective

    def forward(self, x, labels, noise):
        return self.objective(self.net, x, labels, noise)


def train(cfg: ExperimentConfig, *, scale: str, method: str, seed: int, data_dir: str | Path, out_dir: str | Path,
          tracking_uri: str | None = None, stop_after: int | None = None, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    set_threads(cfg.train.threads)
    tc = cfg.train
    owns_group = not (D.dist.is_available() and D.dist.is_initialized())
    dinfo = D.init_from_env(device.type)
    if tc.batch_size % dinfo.world:
        raise ConfigError(f"config key 'train.batch_size': {tc.batch_size} is not divisible by the "
                          f"{dinfo.world} data-parallel processes")
    local_batch = tc.batch_size // dinfo.world
    data = PreparedSplit(data_dir, "train")
    geom = geometry_of(cfg, data)

    net = build_network(cfg, scale, method, geom, init_seed=seed).to(device)
    model = TrainedModel(net)
    compiled = speed.compile_modules(net) if speed.compiles(cfg.speed, device) else []  # after the EMA copy
    objective = Objective(method, cfg.model, cfg.method, net.latent)
    opt = make_optimizer(net, cfg)
    sched = make_scheduler(opt, cfg)
    gen_data = generator(seed * 1000 + 1)                  # batch indices (CPU)
    gen_noise = generator(seed * 1000 + 2, device)         # every noise draw of the objective
    noise = Noise(gen_noise, dinfo.rank, dinfo.world)
    step_fn = LossModule(net, objective)
    if dinfo.enabled:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[device.index] if device.type == "cuda" else None)
    step, run_id, resumed_window = 0, None, {}
    # the metrics log grows in train_log.partial.jsonl (kept with state.pt across a resume, like it a working
    # file of the job); the finished curve is renamed to train_log.jsonl, a declared output of the rule
    log_path, state_path = out_dir / "train_log.partial.jsonl", out_dir / "state.pt"
    final_log = out_dir / "train_log.jsonl"

    if state_path.exists():
        ck = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen_data.set_state(ck["rng"]["data"])
        gen_noise.set_state(ck["rng"]["noise"])
        step, run_id = ck["step"], ck.get("mlflow_run_id")
        resumed_window = ck.get("log_window", {})
        if not log_path.exists() and final_log.exists():  # a state written before the log was renamed
            final_log.rename(log_path)
        _truncate_log(log_path, step)
        print(f"resumed from {state_path} at step {step}", flush=True)
    elif log_path.exists() and dinfo.is_main:
        log_path.unlink()

    n_params = count_parameters(net)
    run_file = out_dir / "mlflow_run.json"
    if run_id is None and run_file.exists():  # a retry that failed before its first checkpoint
        run_id = json.loads(run_file.read_text()).get("run_id")
    run = tracking.Run(tracking_uri if dinfo.is_main else None, cfg.name, f"{scale}/{method}/s{seed}", run_id=run_id,
                       params={"scale": scale, "method": method, "seed": seed, "params": n_params,
                               **{f"{k}": v for k, v in cfg.to_dict().items() if k in ("model", "method", "train")}},
                       tags={"scale": scale, "method": method, "seed": str(seed), "experiment": cfg.name})
    if dinfo.is_main and run.run_id:
        write_json(run_file, {"run_id": run.run_id})

    def checkpoint(path: Path, final: bool = False) -> None:
        if not dinfo.is_main:
            return
        payload = {"model": model.state_dict(), "step": step, "config": cfg.to_dict(), "scale": scale,
                   "method": method, "seed": seed, "geometry": asdict(geom), "params": n_params,
                   "mlflow_run_id": run.run_id}
        if not final:
            payload.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(), log_window=dict(window),
                           rng={"data": gen_data.get_state(), "noise": gen_noise.get_state()})
        save_torch(payload, path)

    autocast = device.type == "cuda" and tc.precision in ("auto", "bf16")
    net.train()
    t0, last = time.time(), {}
    window: dict[str, float] = dict(resumed_window)  # a log window interrupted by the checkpoint
    from tqdm import tqdm

    try:
        with StopSignals() as signals, tqdm(total=tc.steps, initial=step, desc=f"train {scale}/{method}/s{seed}",
                                            disable=not progress, mininterval=5.0) as bar:
            while step < tc.steps:
                # the global batch is drawn identically on every rank; each keeps its slice
                idx = torch.randint(len(data), (tc.batch_size,), generator=gen_data).numpy()
                idx = idx[dinfo.rank * local_batch:(dinfo.rank + 1) * local_batch]
                x = patchify(to_unit(torch.from_numpy(data.take(idx)).to(device)), cfg.model.patch_size)
                y = torch.from_numpy(data.labels[idx]).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss, logs = step_fn(x, y, noise)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {step} "
                                             f"({ {k: float(v) for k, v in logs.items()} })")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip) if tc.grad_clip > 0 \
                    else torch.tensor(0.0)
                opt.step()
                sched.step()
                model.update_ema(tc.ema_decay)
                step += 1
                bar.update(1)
                for k, v in logs.items():
                    window[k] = window.get(k, 0.0) + float(v)
                window["_n"] = window.get("_n", 0) + 1
                if step % tc.log_every == 0 or step == tc.steps:
                    n = window.pop("_n")
                    last = D.mean_across_ranks({k: v / n for k, v in window.items()}, device)
                    last.update(lr=sched.get_last_lr()[0], grad_norm=float(gnorm))
                    window = {}
                    if dinfo.is_main:
                        with open(log_path, "a") as fh:
                            fh.write(json.dumps({"step": step, **last}) + "\n")
                    run.log_metrics(last, step)
                stop = signals.received is not None or (stop_after is not None and step >= stop_after)
                stop = D.any_across_ranks(stop, device)
                if (step % tc.ckpt_every == 0 or stop) and step < tc.steps:
                    checkpoint(state_path)
                    D.barrier()
                if stop and step < tc.steps:
                    why = f"signal {signal.Signals(signals.received).name}" if signals.received else "stop_after"
                    raise Stop(f"{why}: stopped at step {step}; resumable state in {state_path}")
    except Stop:
        run.end("KILLED")
        if owns_group:
            D.shutdown()
        raise
    except BaseException:
        run.end("FAILED")
        raise
    elapsed = time.time() - t0
    checkpoint(out_dir / "model.pt", final=True)
    summary = {"scale": scale, "method": method, "seed": seed, "steps": step, "params": n_params,
               "final": last, "seconds": elapsed, "mlflow_run_id": run.run_id, "device": str(device),
               "world_size": dinfo.world, "compiled": compiled, "autocast_bf16": autocast}
    if dinfo.is_main:
        log_path.touch()
        log_path.replace(final_log)
        write_json(out_dir / "train.json", summary)
        state_path.unlink(missing_ok=True)
        run_file.unlink(missing_ok=True)
    run.log_metrics({"train_seconds": elapsed}, step)
    run.end("FINISHED")
    D.barrier()
    if owns_group:
        D.shutdown()
    return summary


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(ln + "\n" for ln in keep))


# ---- the command-line job ----------------------------------------------------------------------
def job(args):
    cfg = args.cfg
    from pra import tracking

    summary = train(cfg, scale=args.scale, method=args.method, seed=args.seed, data_dir=args.data,
                    out_dir=args.out, tracking_uri=tracking.uri_of(args.tracking), progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("scale", "method", "seed", "steps", "params", "seconds")}))
