"""Which config keys each command's job reads, split into the keys that decide its results and its execution
settings.

READS: the keys that determine a job's results, whole sections ("model") or single keys ("data.resolution");
ALL = every section but `speed`. A Snakemake rule passes a job exactly its READS as a param (job_cfg in
workflow/rules/common.smk), so that they, and only they, make Snakemake rerun it; a job given --config-json
without one of them stops and names it. The train job also records its READS in its checkpoints and resumes
only with the same values (pra.checkpoint).

EXECUTION: keys a job reads that change how, not what, it computes: the `speed` section, how often training
writes its resumable state and how many threads it uses. They reach the train and sample jobs (and the
proxy sampling of sweep-guidance and evaluate-snapshots) through the
environment variable PRA_SPEED_JSON (--speed-json), outside the rerun-triggering params, so changing them
never redoes a finished job nor refuses a resume. They are global to an experiment (an ablation variant's
override of them is not used).

tests/test_contracts.py runs every job and checks that it reads exactly its READS plus its EXECUTION keys.
The hash of a job's code (pra.codehash) covers its entry of both tables.
"""
from __future__ import annotations

from pra.config.sections import SampleConfig, TrainConfig


class Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:  # stable: part of the commands' code hashes (pra.codehash)
        return self.name


ALL = Marker("ALL")  # every section of the config but `speed`

TRAIN_EXECUTION = ("train.ckpt_every", "train.threads")
TRAIN = tuple(f"train.{k}" for k in TrainConfig.__dataclass_fields__ if f"train.{k}" not in TRAIN_EXECUTION)
SAMPLER = tuple(f"sample.{k}" for k in ("ode_steps", "solver", "cfg_scale", "cfg_schedule", "cfg_interval",
                                        "temperature"))  # what a rollout's sampler settings are made of
SAMPLE = SAMPLER + tuple(f"sample.{k}" for k in ("per_class", "batch_size", "seed", "use_ema"))
SWEEP = tuple(k for k in SAMPLER if k != "sample.cfg_scale") + tuple(
    f"sample.{k}" for k in ("batch_size", "use_ema", "cfg_sweep", "sweep_per_class", "sweep_seed"))
PROBE = tuple(f"evaluate.probe_{k}" for k in ("max_train", "holdout_fraction", "epochs", "warmup_epochs",
                                                 "batch_size", "base_lr", "select_max"))
METRICS = tuple(f"evaluate.{k}" for k in ("inception_weights", "inception_sha256_prefix", "kid_subset_size",
                                          "prc_neighborhood"))

# A key some runs of a command read and others do not: the sample job reads sample.cfg_scale only where the run
# does not sweep the guidance (the sweep's choice replaces it); the reference job reads data.resolution only to
# check a user's reference batch (evaluate.reference_stats).
CONDITIONAL = {"sample": ("sample.cfg_scale",), "evaluate-snapshots": ("sample.cfg_scale",),
               "reference": ("data.resolution",)}

READS = {
    "export": ("data.source", "data.val_fraction", "data.split_seed"),
    "prepare": tuple(f"data.{k}" for k in ("val_labels", "resolution", "channels", "shard_size", "on_bad_image",
                                           "workers")),  # the raw folder (data.root) is the rule's input
    "train-classifier": ("evaluate.classifier_epochs", "evaluate.classifier_seed"),
    "reference": ("device", "data.resolution") + METRICS + tuple(f"evaluate.{k}" for k in ("reference_stats", "fid_reference",
                                                                        "reference_features")),
    "train": ("name", "device", "data.resolution", "data.channels", "model", "method") + TRAIN
             + ("evaluate.snapshot_every",),
    "sample": ("device",) + SAMPLE,
    "evaluate": ("name", "device") + METRICS,
    "probe": ("name", "device") + PROBE,
    "sweep-guidance": ("name", "device") + SWEEP + METRICS,
    "evaluate-snapshots": ("name", "device") + SAMPLER + ("sample.batch_size", "evaluate.snapshot_per_class",
                                                          "evaluate.snapshot_seed") + METRICS,
    "gap": ("device", "model", "method") + SAMPLER,
    "accumulate": ("device", "model") + SAMPLER,
    "approximate": ("device", "model", "method"),
    "tune": ALL,
    "ablation": ALL,
    "report": ALL,
}

# the proxy samples of the guidance sweep and of the evaluation along training are drawn as the final sample job
# draws (the speed section's sampling precision and head-ODE mode)
EXECUTION = {"train": ("speed",) + TRAIN_EXECUTION, "sample": ("speed",), "sweep-guidance": ("speed",),
             "evaluate-snapshots": ("speed",)}

assert set(SampleConfig.__dataclass_fields__) >= {k.split(".")[1] for k in SAMPLE + SWEEP}


def reads(command: str) -> tuple[str, ...]:
    """The config keys that determine the results of `command`'s job; ALL expands to every section but
    `speed`."""
    import dataclasses

    from pra.config import ExperimentConfig

    r = READS[command]
    return tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "speed") if r is ALL else r


def missing_keys(passed: dict, keys) -> list[str]:
    """The keys (dotted) of `keys` absent from the passed JSON."""
    out = []
    for key in keys:
        d = passed
        for part in key.split("."):
            if not isinstance(d, dict) or part not in d:
                out.append(key)
                break
            d = d[part]
    return out
