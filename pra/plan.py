"""The run plan: which runs an experiment trains (the main grid, every ablation variant, the tuning of the
noise knobs), their names, and which overrides each uses.

An ablation with `tune_seed` >= 0 tunes every variant whose method has a noise knob (pra.config.NOISE_KNOBS)
that the variant does not set itself: each value of `tune_values[knob]` is trained on the held-out
tuning seed, the value with the best primary metric is chosen (`choose`, written by `python -m pra tune`),
and only then is the variant trained on the measurement seeds with that value. Every knob gets the same
number of values (validated), so no arm gets a larger tuning budget than another.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pra.config import AblationConfig, ExperimentConfig, VariantConfig
from pra.config.ablations import tuned_knob
from pra.typed import merge

# the direction of every metric the pipeline compares (tuning and the wording of comparisons)
HIGHER_IS_BETTER = ("is", "precision", "recall", "class_accuracy", "probe_top1")
LOWER_IS_BETTER = ("fid", "kid")
LOWER_IS_BETTER_PREFIXES = ("gap_", "acc_", "approx_")  # the diagnostics' distances


@dataclass(frozen=True)
class Run:
    """One training run of an experiment: (scale, method, variant, seed); variant 'base' = no overrides."""
    scale: str
    method: str
    variant: str
    seed: int


# the folder of one run inside the experiment's results folder (the rules' wildcard pattern of every run file)
RUN_DIR = "runs/{scale}/{method}/{variant}/s{seed}"


def run_dir(results: Path | str, scale: str, method: str, variant: str, seed: int) -> Path:
    return Path(results) / RUN_DIR.format(scale=scale, method=method, variant=variant, seed=seed)


def path_of(results: Path | str, run: Run) -> Path:
    """The folder of a run inside an experiment's results folder."""
    return run_dir(results, run.scale, run.method, run.variant, run.seed)


def tuning_path(results: Path | str, ablation: AblationConfig) -> Path:
    """Where `python -m pra tune` writes the choices of an ablation."""
    return Path(results) / "tuning" / f"{ablation.name}.json"


def load_choices(ablation: AblationConfig, results: Path | str) -> dict | None:
    """The tuning's choices of an ablation (None if it tunes nothing)."""
    if not tuned_variants(ablation):
        return None
    return json.loads(tuning_path(results, ablation).read_text())


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


def runs(cfg: ExperimentConfig) -> list[Run]:
    """Every training run known before anything is trained, deduplicated: the main grid (scales x methods
    x seeds), every ablation variant, and the tuning runs. The measurement runs of tuned variants depend
    on the tuning's outcome (ablation_runs) and are not listed here."""
    out = [Run(s, m, "base", r) for s in cfg.scales for m in cfg.methods for r in cfg.seeds]
    for a in cfg.ablations:
        tuned = {t.variant.name for t in tuned_variants(a)}
        for v in a.variants:
            if v.name not in tuned:
                out += [Run(a.scale, method_of(a, v), variant_id(v.overrides), r) for r in a.seeds]
        out += [r for _, _, r in tuning_runs(a)]
    return list(dict.fromkeys(out))


def run_config(cfg: ExperimentConfig, run: Run) -> ExperimentConfig:
    """The config one run trains and samples with: the experiment's, with its variant's overrides."""
    return cfg.with_overrides(variant_overrides(cfg)[run.variant]) if run.variant != "base" else cfg


def sweeps_guidance(cfg: ExperimentConfig, run: Run) -> bool:
    """Whether the run chooses its guidance scale by a sweep (sample.cfg_sweep) before its final sample."""
    return bool(run_config(cfg, run).sample.cfg_sweep)


def variant_overrides(cfg: ExperimentConfig) -> dict[str, dict]:
    """variant id -> overrides, for every variant in use ('base' = none)."""
    out = {"base": {}}
    for a in cfg.ablations:
        for ov in candidate_overrides(a):
            out[variant_id(ov)] = ov
    return out


@dataclass(frozen=True)
class Tuned:
    variant: VariantConfig
    method: str
    knob: str
    values: tuple


def method_of(a: AblationConfig, v: VariantConfig) -> str:
    return v.method or a.method


def tuned_variants(a: AblationConfig) -> list[Tuned]:
    """The variants of `a` whose noise knob is tuned (none when a.tune_seed < 0)."""
    if a.tune_seed < 0:
        return []
    return [Tuned(v, method_of(a, v), knob, tuple(a.tune_values[knob]))
            for v in a.variants if (knob := tuned_knob(a, v))]


def with_value(v: VariantConfig, knob: str, value) -> dict:
    return merge(v.overrides or {}, {"method": {knob: value}})


def tuning_runs(a: AblationConfig) -> list[tuple[str, float, Run]]:
    """(variant name, knob value, run) of every tuning run: static, known before anything is trained."""
    return [(t.variant.name, x, Run(a.scale, t.method, variant_id(with_value(t.variant, t.knob, x)), a.tune_seed))
            for t in tuned_variants(a) for x in t.values]


def candidate_overrides(a: AblationConfig) -> list[dict]:
    """Every set of overrides a run of `a` may use (the variants' own and each tuning value)."""
    out = [v.overrides for v in a.variants]
    out += [with_value(t.variant, t.knob, x) for t in tuned_variants(a) for x in t.values]
    return out


def lower_is_better(metric: str) -> bool | None:
    """True/False for the metrics the pipeline knows (FID, KID and the diagnostics' distances are lower-is-
    better; IS, precision, recall, class agreement and probe accuracy higher-is-better), None otherwise."""
    if metric in HIGHER_IS_BETTER:
        return False
    if metric in LOWER_IS_BETTER or metric.startswith(LOWER_IS_BETTER_PREFIXES):
        return True
    return None


def choose(a: AblationConfig, scores: dict[str, dict[float, float]]) -> dict:
    """scores: variant name -> {value: primary metric on the tuning seed}. The best value per variant (ties:
    the first in tune_values); the result is what `python -m pra tune` writes."""
    out = {}
    for t in tuned_variants(a):
        s = scores[t.variant.name]
        best = (max if lower_is_better(a.primary_metric) is False else min)(t.values, key=lambda x: s[x])
        ov = with_value(t.variant, t.knob, best)
        out[t.variant.name] = {"knob": t.knob, "value": best, "overrides": ov, "variant_id": variant_id(ov),
                               "metric": a.primary_metric, "tune_seed": a.tune_seed,
                               "scores": [{"value": x, a.primary_metric: s[x]} for x in t.values]}
    return out


def measured_overrides(a: AblationConfig, v: VariantConfig, choices: dict | None) -> dict:
    """The overrides of variant v on the measurement seeds: the tuned value where v is tuned."""
    if choices and v.name in choices:
        return choices[v.name]["overrides"]
    return v.overrides


def variant_run(a: AblationConfig, v: VariantConfig, choices: dict | None, seed: int) -> Run:
    """The run of variant v of ablation a on a measurement seed (its tuned value where v is tuned)."""
    return Run(a.scale, method_of(a, v), variant_id(measured_overrides(a, v, choices)), seed)


def ablation_runs(a: AblationConfig, choices: dict | None = None) -> list[tuple[VariantConfig, Run]]:
    """(variant, run) for every variant and measurement seed; tuned variants need `choices`."""
    tuned = {t.variant.name for t in tuned_variants(a)}
    if tuned and not choices:
        raise ValueError(f"ablation {a.name!r} tunes {sorted(tuned)}: pass the choices of `python -m pra tune`")
    return [(v, variant_run(a, v, choices, s)) for v in a.variants for s in a.seeds]
