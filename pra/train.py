"""Training loop: one (scale, method, seed) of an experiment.

The step itself (forward, backward, clipping, AdamW, schedule, EMA; bf16 autocast on CUDA) is
pra.step.TrainStep, the same one the benchmarks time. Around it this module draws the batches, logs,
checkpoints and stops: a resumable checkpoint (model + EMA, optimiser, scheduler, step, RNG states, MLflow
run id; pra.checkpoint) is written atomically every `ckpt_every` steps to `state.pt`; the final `model.pt`
is written only when training completes, so a downstream rule never sees a partial model. Re-running after
an interruption continues from `state.pt` if, and only if, it was written with the same config. With
`evaluate.snapshot_every: N` the network (EMA and raw weights, the model.pt format) is also kept every N
steps, in snapshots.partial/ while training runs and renamed to snapshots/ when it completes.
"""
from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pra import checkpoint as C
from pra import distributed as D
from pra import speed, tracking
from pra.config import ConfigError, ExperimentConfig
from pra.data.dataset import PreparedSplit
from pra.io import atomic_path, write_json
from pra.model.network import count_parameters
from pra.model.patches import patchify, to_unit
from pra.noise import Noise
from pra.runtime import generator, resolve_device, set_threads
from pra.step import TrainStep
from pra.stop import Stop, StopSignals


class Batches:
    """The global batch of every step, drawn from the train split identically on every rank; each rank keeps
    its slice. The index generator is part of the resumable state."""

    def __init__(self, data: PreparedSplit, cfg: ExperimentConfig, seed: int, dinfo: D.DistInfo,
                 device: torch.device):
        self.data, self.cfg, self.dinfo, self.device = data, cfg, dinfo, device
        if cfg.train.batch_size % dinfo.world:
            raise ConfigError(f"config key 'train.batch_size': {cfg.train.batch_size} is not divisible by the "
                              f"{dinfo.world} data-parallel processes")
        self.local = cfg.train.batch_size // dinfo.world
        self.gen = generator(seed * 1000 + 1)  # batch indices (CPU)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The rank's slice of the next batch on the device (on CUDA copied from pinned memory without
        blocking the host)."""
        idx = torch.randint(len(self.data), (self.cfg.train.batch_size,), generator=self.gen).numpy()
        mine = slice(self.dinfo.rank * self.local, (self.dinfo.rank + 1) * self.local)
        idx = idx[mine]
        images = self.data.take(idx)  # [b, H, W, C] uint8
        if self.cfg.train.random_flip:  # drawn for the global batch, after its indices (no draw when off)
            flip = (torch.rand(self.cfg.train.batch_size, generator=self.gen) < 0.5).numpy()[mine]
            images[flip] = images[flip, :, ::-1]
        x, y = torch.from_numpy(images), torch.from_numpy(self.data.labels[idx])
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        x = x.to(self.device, non_blocking=True)
        return patchify(to_unit(x), self.cfg.model.patch_size), y.to(self.device, non_blocking=True)


@dataclass
class MetricsLog:
    """Loss terms averaged over `log_every` steps, appended to train_log.partial.jsonl (renamed to
    train_log.jsonl when training completes) and logged to MLflow. `on_device`: the sums stay tensors on the
    device until the flush (no host synchronisation per step; pra.speed.deferred_checks)."""
    path: Path
    window: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    on_device: bool = False

    def add(self, logs: dict) -> None:
        for k, v in logs.items():
            self.window[k] = self.window.get(k, 0.0) + (v if self.on_device else float(v))
        self.window["_n"] = self.window.get("_n", 0) + 1

    def state(self) -> dict:
        """The open window as numbers (what a checkpoint keeps)."""
        return {k: v if k == "_n" else float(v) for k, v in self.window.items()}

    def flush(self, step: int, extra: dict, device, dinfo: D.DistInfo, run: tracking.Run) -> None:
        n = self.window.pop("_n")
        self.last = D.mean_across_ranks({k: float(v) / n for k, v in self.window.items()}, device)
        self.last.update(extra)
        self.window = {}
        if dinfo.is_main:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"step": step, **self.last}) + "\n")
        run.log_metrics(self.last, step)

    def truncate(self, step: int) -> None:
        """Drop lines written after the checkpoint we resume from (they will be written again)."""
        if not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))


class Iteration:
    """One iteration of the training job, as `train` runs it and the GPU benchmark times it: the batch drawn and
    moved to the device, the step, its loss terms added to the log window and, at the log cadence, the deferred
    non-finite check and the log's flush (to the file and MLflow)."""

    def __init__(self, cfg: ExperimentConfig, ts: TrainStep, batches: Batches, noise: Noise, log: MetricsLog,
                 run: tracking.Run, dinfo: D.DistInfo):
        self.cfg, self.ts, self.batches, self.noise, self.log, self.run, self.dinfo = \
            cfg, ts, batches, noise, log, run, dinfo

    def __call__(self, step: int) -> int:
        """Run step `step` (0-based); returns the number of steps done."""
        x, y = self.batches.next()
        result = self.ts(x, y, self.noise, step=step)
        step += 1
        self.log.add(result.logs)
        tc = self.cfg.train
        if step % tc.log_every == 0 or step == tc.steps:
            self.ts.check(step)
            self.log.flush(step, {"lr": self.ts.lr, "grad_norm": float(result.grad_norm)}, self.ts.device,
                           self.dinfo, self.run)
        return step


def open_tracking(cfg: ExperimentConfig, out_dir: Path, uri: str | None, run_id: str | None, *, scale: str,
                  method: str, seed: int, n_params: int, dinfo: D.DistInfo) -> tracking.Run:
    """The run's MLflow run: continued by id after an interruption (from state.pt, or mlflow_run.json when a
    retry failed before its first checkpoint)."""
    run_file = out_dir / "mlflow_run.json"
    if run_id is None and run_file.exists():
        run_id = json.loads(run_file.read_text()).get("run_id")
    run = tracking.Run(uri if dinfo.is_main else None, cfg.name, f"{scale}/{method}/s{seed}", run_id=run_id,
                       params={"scale": scale, "method": method, "seed": seed, "params": n_params,
                               "model": asdict(cfg.model), "method_settings": asdict(cfg.method),
                               "train": asdict(cfg.train)},
                       tags={"scale": scale, "method": method, "seed": str(seed), "experiment": cfg.name})
    if dinfo.is_main and run.run_id:
        write_json(run_file, {"run_id": run.run_id})
    return run


def run_config(cfg: ExperimentConfig) -> dict:
    """The config recorded in a run's checkpoints and compared on resume: the keys that decide the train job's
    results (pra.jobconfig.READS), which are what its Snakemake rule passes."""
    from pra.jobconfig import reads

    return cfg.subset(*reads("train"))


def train(cfg: ExperimentConfig, *, scale: str, method: str, seed: int, data_dir: str | Path, out_dir: str | Path,
          tracking_uri: str | None = None, stop_after: int | None = None, progress: bool = True,
          code_hash: str | None = None) -> dict:
    """Train one run to cfg.train.steps (resuming from out_dir/state.pt if it was written with the same
    run_config, scale, method and seed); returns the summary written to train.json (with code_hash, the
    job's pra.codehash, when given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    set_threads(cfg.train.threads)
    tc = cfg.train
    owns_group = not (D.dist.is_available() and D.dist.is_initialized())
    dinfo = D.init_from_env(device.type)
    data = PreparedSplit(data_dir, "train")
    batches = Batches(data, cfg, seed, dinfo, device)
    geom = C.geometry_of(cfg, data)

    net = C.build_network(cfg, scale, method, geom, init_seed=seed).to(device)
    n_params = count_parameters(net)
    ts = TrainStep(cfg, net, method, device, ddp=dinfo.enabled, compile=speed.compiles(cfg.speed, device))
    gen_noise = generator(seed * 1000 + 2, device)  # every noise draw of the objective
    noise = Noise(gen_noise, dinfo.rank, dinfo.world)
    record = C.run_record(run_config(cfg), scale=scale, method=method, seed=seed, geometry=geom, params=n_params,
                          code_hash=code_hash, data=C.data_digest(data_dir))

    # the metrics log grows in train_log.partial.jsonl (kept with state.pt across a resume, like it a working
    # file of the job); the finished curve is renamed to train_log.jsonl, a declared output of the rule
    state_path, final_log = out_dir / "state.pt", out_dir / "train_log.jsonl"
    log = MetricsLog(out_dir / "train_log.partial.jsonl", on_device=ts.deferred)
    snapshots = out_dir / "snapshots.partial"  # kept with state.pt across a resume; snapshots/ when complete
    step, run_id = 0, None
    if state_path.exists():
        ck = C.load_resumable(state_path, record)
        ts.load_state(ck)
        batches.gen.set_state(ck["rng"]["data"])
        gen_noise.set_state(ck["rng"]["noise"])
        step, run_id = ck["step"], ck.get("mlflow_run_id")
        log.window = dict(ck.get("log_window", {}))  # a log window interrupted by the checkpoint
        if not log.path.exists() and final_log.exists():  # a state written before the log was renamed
            final_log.rename(log.path)
        log.truncate(step)
        print(f"resumed from {state_path} at step {step}", flush=True)
    elif dinfo.is_main:
        log.path.unlink(missing_ok=True)
        shutil.rmtree(snapshots, ignore_errors=True)  # an earlier attempt's, not resumed
    run = open_tracking(cfg, out_dir, tracking_uri, run_id, scale=scale, method=method, seed=seed,
                        n_params=n_params, dinfo=dinfo)

    iteration = Iteration(cfg, ts, batches, noise, log, run, dinfo)

    def save_state() -> None:
        ts.check(step)  # nothing computed after a non-finite loss is kept
        if dinfo.is_main:
            C.save_state(state_path, record, ts.state(), step=step, log_window=log.state(),
                         rng={"data": batches.gen.get_state(), "noise": gen_noise.get_state()},
                         mlflow_run_id=run.run_id)

    net.train()
    t0 = time.time()
    from tqdm import tqdm

    try:
        with StopSignals() as signals, tqdm(total=tc.steps, initial=step, desc=f"train {scale}/{method}/s{seed}",
                                            disable=not progress, mininterval=5.0) as bar:
            while step < tc.steps:
                step = iteration(step)
                bar.update(1)
                every = cfg.evaluate.snapshot_every
                if every and step % every == 0 and step < tc.steps:
                    ts.check(step)
                    if dinfo.is_main:
                        C.save_model(snapshots / f"step-{step:07d}.pt", record, ts.model, step=step,
                                     mlflow_run_id=run.run_id)
                stop = signals.received is not None or (stop_after is not None and step >= stop_after)
                # every rank stops at the same step; with several processes and deferred checks they agree on it
                # at the log and checkpoint cadence (stop_after is the same on every rank), otherwise every step
                if not (ts.deferred and dinfo.enabled) or step % tc.log_every == 0 or step % tc.ckpt_every == 0 \
                        or (stop_after is not None and step >= stop_after):
                    stop = D.any_across_ranks(stop, device)
                else:
                    stop = False
                if (step % tc.ckpt_every == 0 or stop) and step < tc.steps:
                    save_state()
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
    summary = {"scale": scale, "method": method, "seed": seed, "steps": step, "params": n_params,
               "final": log.last, "seconds": elapsed, "mlflow_run_id": run.run_id, "device": str(device),
               "world_size": dinfo.world, "compiled": ts.compiled, "autocast_bf16": ts.autocast,
               "speed": speed.training(cfg.speed, device),
               "code_hash": code_hash}
    ts.check(step)
    if dinfo.is_main:
        C.save_model(out_dir / "model.pt", record, ts.model, step=step, mlflow_run_id=run.run_id)
        if cfg.evaluate.snapshot_every:
            snapshots.mkdir(exist_ok=True)
            shutil.rmtree(out_dir / "snapshots", ignore_errors=True)
            snapshots.replace(out_dir / "snapshots")
        log.path.touch()
        log.path.replace(final_log)
        write_json(out_dir / "train.json", summary)
        state_path.unlink(missing_ok=True)
        (out_dir / "mlflow_run.json").unlink(missing_ok=True)
    run.log_metrics({"train_seconds": elapsed}, step)
    run.end("FINISHED")
    D.barrier()
    if owns_group:
        D.shutdown()
    return summary


# ---- the command-line job ----------------------------------------------------------------------
def job(args):
    summary = train(args.cfg, scale=args.scale, method=args.method, seed=args.seed, data_dir=args.data,
                    out_dir=args.out, tracking_uri=tracking.uri_of(args.tracking), progress=not args.quiet,
                    code_hash=args.code_hash)
    print(json.dumps({k: summary[k] for k in ("scale", "method", "seed", "steps", "params", "seconds")}))
