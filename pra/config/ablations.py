"""Ablations: variants of one scale trained with the same budget and compared; the hypotheses declared
with them; and the default ablation, the comparison that would settle PRA's premise."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

from pra import endpoints
from pra.config.sections import ANCHORED_METHODS, ILL_POSED_METHODS, LATENT_METHODS, METHODS, NOISE_KNOBS, MethodConfig
from pra.typed import ConfigError, check_value, field_meta, opt

OVERRIDABLE = ("model", "method", "train", "sample")
# names that become folder and file names (experiments, ablations)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


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
                      "gap_inputs_<construction>_mmd2_excess, acc_region_excess, ...: pra.endpoints).")
    variant: str = opt("", "The variant tested.")
    reference: str = opt("", "The variant it is compared with (may be the same variant with another metric).")
    reference_metric: str = opt("", "The reference's metric (empty: the same metric), e.g. the input gap of "
                                "teacher-forced inputs of the same model.")
    expect: str = opt("lower", "Expected sign of variant minus reference: 'lower', 'higher', or 'equal' (no "
                      "difference: supported only by an equivalence test against `equivalence_margin` in the "
                      "paired analysis, never by a non-significant test).",
                      choices=["lower", "higher", "equal"])


@dataclass(frozen=True)
class EstimateConfig:
    variant: str = opt("", "One arm of the estimated comparison.")
    reference: str = opt("", "The arm it is compared with.")
    metric: str = opt("fid", "The endpoint compared (a per-run metric, as for hypotheses).")
    why: str = opt("", "What the comparison separates, in words (printed beside the estimate).")


@dataclass(frozen=True)
class AblationConfig:
    name: str = opt("settle", "Ablation name (one MLflow parent run, one table, "
                    "results/<experiment>/ablations/<name>.json; letters, digits, '.', '_', '-').",
                    pattern=NAME_PATTERN)
    scale: str = opt("tiny-S", "Model scale of every variant.")
    method: str = opt("", "Default method of the variants.", choices=["", *METHODS])
    seeds: list[int] = opt([0], "Training seeds of every variant (distinct: each is one independent run).",
                           item_minimum=0, unique=True)
    diagnostics: bool = opt(False, "Also measure the input-distribution gap and error accumulation of every "
                            "variant.")
    variants: list[VariantConfig] = opt([], "The variants compared.")
    reference: str = opt("", "The variant every other is compared with (empty: the variant named 'pra' if there "
                         "is one, else the only variant without overrides).")
    primary_metric: str = opt("fid", "The metric every variant is compared with the reference on (tested with "
                              "the hypotheses under welch_holm, estimated with intervals under paired).")
    analysis: str = opt("welch_holm", "The registered analysis (pra.analysis): 'welch_holm' = Welch's t-test "
                        "per comparison, Holm over the family, with a paired sensitivity analysis; 'paired' = the "
                        "hypotheses (at most 3) as the confirmatory family, paired t over seeds on log values at "
                        "the Bonferroni level, 'equal' from TOST, the other comparisons as estimates.",
                        choices=["welch_holm", "paired"])
    alpha: float = opt(0.05, "Family-wise error rate of the registered analysis.", exclusive_minimum=0.0,
                       maximum=0.5)
    equivalence_margin: float = opt(1.15, "Equivalence margin of 'equal' hypotheses on ratio metrics (FID, KID, "
                                    "IS), as a ratio: equal means the geometric-mean ratio lies within "
                                    "[1/margin, margin].", reconstruction=True, exclusive_minimum=1.0)
    hypotheses: list[HypothesisConfig] = opt([], "Declared hypotheses with their endpoints, tested and worded in the report.",
                                             allow_empty=True)
    estimates: list[EstimateConfig] = opt([], "Declared comparisons beyond those with the reference, e.g. two arms "
                                          "that separate one effect: paired estimates with intervals at the "
                                          "family's level, never tests (the paired analysis only).",
                                          allow_empty=True)
    tune_seed: int = opt(-1, "Held-out seed on which the noise knobs are tuned (not one of `seeds`); -1 = no tuning.",
                         minimum=-1)
    tune_values: dict = opt({}, "Values tried per noise knob on the tuning seed, the same number for every knob, "
                            "e.g. {t_min: [0.25, 0.5, 0.75], pixel_noise_sigma: [0.1, 0.2, 0.4]}; every variant "
                            "whose method has that knob (and does not set it) is tuned; the best value on "
                            "primary_metric is then measured on `seeds`.")


# the arms of the settle comparison, (variant, method, overrides): one seed in the default run (minutes); five of
# them tuned and on 5 seeds on MNIST in experiments/settle.yaml; the other methods (pixel_tf, latent_pixel_noise,
# anchored_rollout) can be added
DEFAULT_SETTLE_ARMS = (("pixel_noise", "pixel_noise", {}), ("latent_tf", "latent_tf", {}), ("pra", "pra", {}),
                       ("pra_t1", "pra", {"method": {"t_min": 1.0}}),  # the control without perturbation
                       ("pra_sequential", "pra_sequential", {}), ("free_rollout", "free_rollout", {}))


# latent_tf vs pra = (latent_tf vs pra_t1) + (pra_t1 vs pra): the first part has no perturbation in it
SETTLE_SPLIT = ("the trunk's inputs and the decoder's context, clean patches vs unperturbed renderings: the part of "
                "latent_tf vs pra that is not the perturbation")


def settle_default() -> list:
    return [AblationConfig(name="settle", scale="tiny-S", method="", seeds=[0], diagnostics=True, analysis="paired",
                           variants=[VariantConfig(name=n, method=m, overrides=copy.deepcopy(o))
                                     for n, m, o in DEFAULT_SETTLE_ARMS],
                           hypotheses=[HypothesisConfig(
                               id="H1", statement="PRA's parallel inputs do as well as its sequential twin's",
                               metric="fid", variant="pra", reference="pra_sequential", expect="equal")],
                           estimates=[EstimateConfig(variant="latent_tf", reference="pra_t1", metric="fid",
                                                     why=SETTLE_SPLIT)])]


def tuned_knob(a: AblationConfig, v: VariantConfig) -> str | None:
    """The noise knob of variant `v` that `a` tunes (when it tunes: tune_seed >= 0): its method's knob, if
    tune_values lists it and the variant does not set it itself; else None."""
    knob = NOISE_KNOBS.get(v.method or a.method)
    return knob if knob in a.tune_values and knob not in v.overrides.get("method", {}) else None


def check(ablations: list[AblationConfig], validate_overrides: Callable[[Mapping], object],
          scales: Collection[str] | None = None, probe: bool = True) -> None:
    """The relations inside each ablation (names, references, tuning values, endpoints); `validate_overrides`
    checks a variant's overrides against the whole config; `scales`: the known scale names (None: not checked);
    `probe`: whether the experiment probes (evaluate.probe), so that probe_top1 is measured."""
    names = [a.name for a in ablations]
    if len(set(names)) != len(names):
        raise ConfigError(f"config key 'ablations': duplicate ablation names {names}")
    for i, a in enumerate(ablations):
        where = f"ablations[{i}]"
        if scales is not None and a.scale not in scales:
            raise ConfigError(f"config key '{where}.scale': unknown scale {a.scale!r} (known: {sorted(scales)})")
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
                resolved = validate_overrides(v.overrides)
            except ConfigError as e:
                raise ConfigError(f"in '{vw}.overrides': {e}") from None
            law = getattr(getattr(resolved, "method", None), "perturbation_law", "interpolant")
            if (v.method or a.method) in ANCHORED_METHODS and law != "interpolant":
                raise ConfigError(f"config key '{vw}': method {v.method or a.method!r} starts its head ODE on the "
                                  f"flow's own path and takes only method.perturbation_law 'interpolant', got "
                                  f"{law!r}")
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
                check_value(("ablations", "tune_values", knob), float(x), float, field_meta(MethodConfig, knob))
            lengths.add(len(values))
        if len(lengths) > 1:
            raise ConfigError(f"config key '{where}.tune_values': every knob needs the same number of values "
                              f"(the same tuning budget), got {a.tune_values}")
        if a.tune_seed >= 0 and a.primary_metric not in endpoints.EVAL_KEYS:
            raise ConfigError(f"config key '{where}.primary_metric': tuning (tune_seed >= 0) chooses on a sample "
                              f"metric of the tuning runs ({', '.join(endpoints.EVAL_KEYS)}), got "
                              f"{a.primary_metric!r}")
        if a.tune_seed >= 0 and not any(tuned_knob(a, v) for v in a.variants):
            raise ConfigError(f"config key '{where}.tune_seed': no variant has a knob of tune_values to tune "
                              f"({sorted(a.tune_values)}; a variant that sets its knob is not tuned)")
        methods = {v.name: v.method or a.method for v in a.variants}
        # every endpoint, with the variants it is measured on
        endpoint_keys = [("primary_metric", a.primary_metric, vnames)] + [
            (f"hypotheses[{j}].{k}", getattr(h, k), [getattr(h, arm)]) for j, h in enumerate(a.hypotheses)
            for k, arm in (("metric", "variant"), ("reference_metric", "reference")) if getattr(h, k)] + [
            (f"estimates[{j}].metric", e.metric, [e.variant, e.reference]) for j, e in enumerate(a.estimates)]
        for key, metric, arms in endpoint_keys:
            _check_endpoint(f"{where}.{key}", metric, a.diagnostics, probe,
                            [n for n in arms if methods.get(n, "") not in LATENT_METHODS])
        if a.reference and a.reference not in vnames:
            raise ConfigError(f"config key '{where}.reference': {a.reference!r} is not a variant ({vnames})")
        if a.analysis == "paired" and len(a.hypotheses) > 3:
            raise ConfigError(f"config key '{where}.hypotheses': the paired analysis registers at most 3 "
                              f"confirmatory hypotheses, got {len(a.hypotheses)} (estimate the rest)")
        for j, h in enumerate(a.hypotheses):
            for key in ("variant", "reference"):
                if getattr(h, key) not in vnames:
                    raise ConfigError(f"config key '{where}.hypotheses[{j}].{key}': {getattr(h, key)!r} is not a "
                                      f"variant of this ablation ({vnames})")
                if a.analysis == "paired" and methods[getattr(h, key)] in ILL_POSED_METHODS:
                    raise ConfigError(f"config key '{where}.hypotheses[{j}].{key}': {getattr(h, key)!r} trains "
                                      f"with {methods[getattr(h, key)]}, whose inputs belong to another image than "
                                      f"its target: it cannot be an arm of a hypothesis")
        _check_estimates(where, a, vnames, methods)


def reference_name(a: AblationConfig) -> str | None:
    """The variant the others are compared with: the declared one, else the variant named 'pra', else the only
    variant without overrides in a one-method ablation, else none."""
    names = [v.name for v in a.variants]
    if a.reference:
        return a.reference
    if "pra" in names:
        return "pra"
    base = [v.name for v in a.variants if not v.overrides]
    return base[0] if len({v.method or a.method for v in a.variants}) == 1 and len(base) == 1 else None


def _check_estimates(where: str, a: AblationConfig, vnames: list[str], methods: dict[str, str]) -> None:
    """Declared estimates: the paired analysis only, real arms, none ill-posed, and each distinct comparison once
    (not a hypothesis's, not one the reference comparisons already make, not twice)."""
    if a.estimates and a.analysis != "paired":
        raise ConfigError(f"config key '{where}.estimates': declared estimates belong to the paired analysis "
                          f"(under {a.analysis!r} every comparison of the family is tested)")
    reference = reference_name(a)
    seen = {frozenset({(h.variant, h.metric), (h.reference, h.reference_metric or h.metric)}): f"hypothesis {h.id}"
            for h in a.hypotheses}
    for j, e in enumerate(a.estimates):
        key = f"{where}.estimates[{j}]"
        for arm in ("variant", "reference"):
            name = getattr(e, arm)
            if name not in vnames:
                raise ConfigError(f"config key '{key}.{arm}': {name!r} is not a variant of this ablation ({vnames})")
            if methods[name] in ILL_POSED_METHODS:
                raise ConfigError(f"config key '{key}.{arm}': {name!r} trains with {methods[name]}, whose inputs "
                                  f"belong to another image than its target: an estimate with it is not read")
        if e.variant == e.reference:
            raise ConfigError(f"config key '{key}.reference': an arm compared with itself ({e.variant!r})")
        k = frozenset({(e.variant, e.metric), (e.reference, e.metric)})
        if k in seen:
            raise ConfigError(f"config key '{key}': {e.variant} vs {e.reference} on {e.metric} repeats {seen[k]} "
                              f"(each distinct comparison once)")
        if e.metric == a.primary_metric and reference in (e.variant, e.reference):
            raise ConfigError(f"config key '{key}': {e.variant} vs {e.reference} on {e.metric} is already estimated "
                              f"as a comparison with the reference ({reference})")
        seen[k] = f"estimates[{j}]"


def _check_endpoint(key: str, metric: str, diagnostics: bool, probe: bool, pixel_arms: list[str]) -> None:
    """`metric` is produced by the runs it is read from (pixel_arms: those of them that train a pixel method)."""
    try:
        need = endpoints.needs(metric)
    except KeyError:
        raise ConfigError(f"config key '{key}': {metric!r} is not a per-run metric ({endpoints.describe()})") from None
    if "diagnostics" in need and not diagnostics:
        raise ConfigError(f"config key '{key}': {metric!r} is measured only with diagnostics: true")
    if "probe" in need and not probe:
        raise ConfigError(f"config key '{key}': {metric!r} is measured only with evaluate.probe: true")
    if "latent" in need and pixel_arms:
        raise ConfigError(f"config key '{key}': {metric!r} exists only for a latent method's model, and "
                          f"{pixel_arms} train(s) a pixel method")
