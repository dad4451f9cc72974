"""Typed experiment configuration: one object from YAML to every module.

The dataclasses (the sections in pra.config.sections, the ablations in pra.config.ablations, the experiment
below) are the single source of truth; pra.typed validates a raw mapping against them, naming the offending
key, and renders the same rules as the JSON schema Snakemake validates against
(workflow/schemas/config.schema.json, kept in sync by a test). Values marked ``reconstruction`` are not
published by the paper: they are this project's documented defaults, listed by
``python -m pra config --reconstructions``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping


from pra.config import ablations as _ablations
from pra.config import yamlfile
from pra.config.ablations import (DEFAULT_SETTLE_ARMS, NAME_PATTERN, OVERRIDABLE, AblationConfig,
                                  EstimateConfig, HypothesisConfig, VariantConfig, settle_default)
from pra.config.sections import (ANCHORED_METHODS, ILL_POSED_METHODS, LATENT_METHODS, METHODS, NOISE_KNOBS,
                                 DataConfig, EvaluateConfig, MethodConfig, ModelConfig, ResourcesConfig,
                                 SampleConfig, SpeedConfig, TrainConfig)
from pra.typed import ConfigError, build, check_value, field_meta, marked, merge, opt, plain
from pra.typed import json_schema as _schema

__all__ = ["ExperimentConfig", "from_dict", "load", "json_schema", "reconstructions", "ConfigError", "METHODS",
           "LATENT_METHODS", "ILL_POSED_METHODS", "NOISE_KNOBS", "OVERRIDABLE", "DEFAULT_SETTLE_ARMS", "DataConfig", "ModelConfig",
           "MethodConfig", "TrainConfig", "SampleConfig", "EvaluateConfig", "ResourcesConfig", "SpeedConfig", "AblationConfig",
           "VariantConfig", "HypothesisConfig", "EstimateConfig"]


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = opt("default", "Experiment name; artifacts go to results/<name>/ (letters, digits, '.', '_', '-').",
                    pattern=NAME_PATTERN)
    device: str = opt("auto", "'auto' (CUDA if available), 'cpu' or 'cuda'.", choices=["auto", "cpu", "cuda"])
    reports_dir: str = opt("reports", "Where the report stage writes tables and figures.")
    scales: list[str] = opt(["tiny-S"], "Model scales to train (see `python -m pra scales`).", unique=True)
    methods: list[str] = opt(["pra"], f"Training methods, from {list(METHODS)}.", item_choices=list(METHODS),
                             unique=True)
    seeds: list[int] = opt([0], "Training seeds (distinct: each is one independent run).", item_minimum=0,
                           unique=True)
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data preparation."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Architecture shared by all scales."})
    method: MethodConfig = field(default_factory=MethodConfig, metadata={"help": "Input construction per method."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation."})
    sample: SampleConfig = field(default_factory=SampleConfig, metadata={"help": "Sampling."})
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"help": "Evaluation."})
    resources: ResourcesConfig = field(default_factory=ResourcesConfig, metadata={"help": "Scheduler requests."})
    speed: SpeedConfig = field(default_factory=SpeedConfig, metadata={
        "help": "Execution speed (compilation, sampling precision, CUDA graphs); not a rerun trigger."})
    ablations: list[AblationConfig] = field(default_factory=settle_default, metadata={
        "help": "Ablations: each trains its variants at one scale with the same budget and compares them; "
                "the default is the comparison that would settle PRA's premise (six arms, the same model).",
        "allow_empty": True})

    def with_overrides(self, overrides: Mapping) -> "ExperimentConfig":
        """This config with a variant's overrides applied (ablations dropped: a variant is one run's config)."""
        return from_dict(merge({**self.to_dict(), "ablations": []}, overrides or {}), variant=True)

    def resource(self, scale: str, key: str):
        """A ResourcesConfig value for a scale, after the scale's overrides."""
        return self.resources.scale_overrides.get(scale, {}).get(key, getattr(self.resources, key))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def subset_json(self, *keys: str) -> str:
        """JSON of some keys ("train" or "data.resolution"): what a rule passes to its command, and
        therefore what makes Snakemake rerun it. Keys not passed take their defaults in the command."""
        return json.dumps(self.subset(*keys), sort_keys=True)

    def subset(self, *keys: str) -> dict:
        """The values of some keys ("train" or "data.resolution") as plain data; reads nothing else."""
        out: dict = {}
        for key in keys:
            head, _, tail = key.partition(".")
            if tail:
                out.setdefault(head, {})[tail] = _data(getattr(getattr(self, head), tail))
            else:
                out[head] = _data(getattr(self, head))
        return out

    def replace(self, **sections) -> "ExperimentConfig":
        """Copy with some fields replaced; nested sections accept dicts of overrides."""
        new = {}
        for key, value in sections.items():
            current = getattr(self, key)
            if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
                value = dataclasses.replace(current, **value)
            new[key] = value
        return from_dict({**self.to_dict(), **{k: plain(v) for k, v in new.items()}})


def _data(v):
    """A config value as plain data (dataclasses, also inside lists, as dicts), as to_dict() has it."""
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    if isinstance(v, list):
        return [_data(x) for x in v]
    return v


def from_dict(raw: Mapping, *, cross_checks: bool = True, scales: Collection[str] | None = None,
              variant: bool = False) -> ExperimentConfig:
    """Validate a raw mapping and build the typed config; raises ConfigError naming the key.

    scales: the known scale names (pra.model.scales.SCALES), checked when given.
    cross_checks=False checks every key but not the relations between keys: for the subset of a config
    that a rule passes to its command (the rest takes defaults), after the whole config was validated.
    variant=True: one ablation variant's config (its `methods` is the experiment's main grid, not its own run's)."""
    cfg = build(ExperimentConfig, raw or {}, ())
    if cross_checks:
        _cross_checks(cfg, scales, variant)
    return cfg


def _cross_checks(cfg: ExperimentConfig, scales: Collection[str] | None, variant: bool = False) -> None:
    for s in cfg.scales if scales is not None else ():
        if s not in scales:
            raise ConfigError(f"config key 'scales': unknown scale {s!r} (known: {sorted(scales)})")
    if cfg.data.resolution % cfg.model.patch_size:
        raise ConfigError(f"config key 'model.patch_size': {cfg.model.patch_size} does not divide "
                          f"data.resolution={cfg.data.resolution}")
    if (cfg.data.resolution // cfg.model.patch_size) ** 2 < 2:
        raise ConfigError("config key 'model.patch_size': the image must have at least 2 patches")
    anchored = [m for m in cfg.methods if m in ANCHORED_METHODS]
    if cfg.method.perturbation_law != "interpolant" and anchored and not variant:
        raise ConfigError(f"config key 'method.perturbation_law': {cfg.method.perturbation_law!r} with methods "
                          f"{anchored}, whose head ODE starts on the flow's own path (the interpolant); set the law "
                          "per variant in an ablation's overrides, or train those methods in another experiment")
    if cfg.train.warmup_steps > cfg.train.steps:
        raise ConfigError(f"config key 'train.warmup_steps': {cfg.train.warmup_steps} warm-up steps in a run of "
                          f"train.steps={cfg.train.steps}: the learning rate would never reach train.lr and the "
                          f"schedule after the warm-up would never run")
    lo, hi = cfg.sample.cfg_interval
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(f"config key 'sample.cfg_interval': need 0 <= lo <= hi <= 1, got {[lo, hi]}")
    if cfg.evaluate.snapshot_every and cfg.evaluate.snapshot_seed == cfg.sample.seed:
        raise ConfigError("config key 'evaluate.snapshot_seed': must differ from sample.seed (the proxy samples "
                          "along training are drawn apart from the final sample)")
    if cfg.sample.cfg_sweep and cfg.sample.sweep_seed == cfg.sample.seed:
        raise ConfigError("config key 'sample.sweep_seed': must differ from sample.seed (the guidance is chosen on "
                          "samples apart from the final one)")
    if any(x < 0 for x in cfg.sample.cfg_sweep) or len(set(cfg.sample.cfg_sweep)) != len(cfg.sample.cfg_sweep):
        raise ConfigError("config key 'sample.cfg_sweep': non-negative, distinct guidance scales")
    if cfg.evaluate.classifier_dir and cfg.evaluate.inception_weights:
        raise ConfigError("config key 'evaluate.classifier_dir': set with evaluate.inception_weights, which scores "
                          "in Inception's features; a classifier is not used")
    if cfg.evaluate.reference_stats and not cfg.evaluate.inception_weights:
        raise ConfigError("config key 'evaluate.reference_stats': reference statistics in Inception's features need "
                          "evaluate.inception_weights (without it samples are scored in the classifier's features)")
    if cfg.data.source == "imagefolder" and not cfg.data.root:
        raise ConfigError("config key 'data.root': required for data.source 'imagefolder'")
    for sc, over in cfg.resources.scale_overrides.items():
        if not isinstance(over, Mapping):
            raise ConfigError(f"config key 'resources.scale_overrides.{sc}': expected a mapping")
        if scales is not None and sc not in scales:
            raise ConfigError(f"config key 'resources.scale_overrides.{sc}': unknown scale {sc!r} (known: "
                              f"{sorted(scales)})")
        for k, v in over.items():
            if k not in {f.name for f in dataclasses.fields(ResourcesConfig)} or k in ("scale_overrides", "container"):
                raise ConfigError(f"unknown config key 'resources.scale_overrides.{sc}.{k}'")
            check_value(("resources", "scale_overrides", sc, k), v, int, field_meta(ResourcesConfig, k))
    _ablations.check(cfg.ablations, cfg.with_overrides, scales, probe=cfg.evaluate.probe)


def load(*paths: str | Path, scales: Collection[str] | None = None) -> ExperimentConfig:
    """Load one or more YAML files (later ones override earlier ones, key by key) and validate."""
    raw: dict = {}
    for p in paths:
        if not Path(p).exists():
            raise ConfigError(f"{p}: no such config file")
        data = yamlfile.read(p) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{p}: the top level must be a mapping")
        raw = merge(raw, data)
    return from_dict(raw, scales=scales)


def json_schema() -> dict:
    schema = _schema(ExperimentConfig)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = "PRA experiment configuration (rendered by `python -m pra schema`)."
    return schema


def reconstructions(cfg: ExperimentConfig | None = None) -> list[dict]:
    """Every config value that is a reconstruction, with its current value."""
    return marked(cfg or ExperimentConfig(), "reconstruction")


# ---- the command-line jobs ---------------------------------------------------------------------
def schema_job(args):
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)


def config_job(args):
    if args.reconstructions:
        for r in reconstructions(args.cfg):
            print(f"{r['key']:32s} {json.dumps(r['value']):>14s}  {r['help']}")
    else:
        print(json.dumps(args.cfg.to_dict(), indent=2))
