"""The per-run metrics an ablation compares (its endpoints), by name: what a hypothesis or `primary_metric`
may name, checked before any job starts.

eval.json gives the sample metrics; train.json the training time; probe.json the probe accuracy (when the
experiment probes); an ablation with diagnostics adds gap.json's statistics per space and construction,
accumulation.json's summary and approximation.json's content ratios (pra.ablation.variant_metrics reads them).
"""
from __future__ import annotations

EVAL_KEYS = ("fid", "is", "kid", "precision", "recall", "class_accuracy")
# accumulation.json's per-run scalars (its "summary"): the region's excess with the full own prefix and its
# permutation p, the two distances, the floor, D(0) over the floor, the EB-M-style ratio, the growth exponent and
# the feedback effect on the classifier's agreement
ACCUMULATION_KEYS = ("region_excess", "p_region_excess", "distance_true_prefix", "distance_own_prefix", "floor",
                     "d0_minus_floor", "ebm_ratio", "growth_beta", "feedback_effect")
# gap.json: its two spaces and the sets it compares with the model's own rollout (the constructions of
# pra.diagnostics.gap and the rollout-vs-rollout null)
GAP_SPACES = ("inputs", "hidden")
PIXEL_GAP_SETS = ("teacher_forcing", "pixel_noise")  # every model's
LATENT_GAP_SETS = ("reconstruction", "pra", "energy_matched", "pra_sequential", "parallel_anchored",
                   "anchored_rollout")  # only a latent model's (they decode states)
NULL_SET = "rollout_null"
GAP_SETS = (*PIXEL_GAP_SETS, *LATENT_GAP_SETS, NULL_SET)
APPROXIMATION_KEYS = ("pra", "twin", "pra_minus_twin")  # only a latent model's


def _gap_names() -> dict[str, bool]:
    """gap metric name -> whether only a latent model has it (the statistics gap_metrics writes: the excess over
    the null for every set but the null, the difference to clean inputs for every set but those two)."""
    out = {}
    for space in GAP_SPACES:
        for name in GAP_SETS:
            stats = ["kl", "mmd2"] + (["kl_excess", "mmd2_excess"] if name != NULL_SET else []) + \
                (["mmd2_minus_tf"] if name not in (NULL_SET, "teacher_forcing") else [])
            out.update({f"gap_{space}_{name}_{st}": name in LATENT_GAP_SETS for st in stats})
    return out


_GAP = _gap_names()


def needs(metric: str) -> set[str]:
    """What a run must have for `metric`: a subset of {'probe' (evaluate.probe), 'diagnostics' (the ablation's
    diagnostics), 'latent' (a latent method's model)}; empty for eval.json's and train.json's metrics, which
    every run has. Raises KeyError for a name no run produces."""
    if metric in EVAL_KEYS or metric == "train_seconds":
        return set()
    if metric == "probe_top1":
        return {"probe"}
    if metric in _GAP:
        return {"diagnostics", "latent"} if _GAP[metric] else {"diagnostics"}
    if metric in {f"acc_{k}" for k in ACCUMULATION_KEYS}:
        return {"diagnostics"}
    if metric in {f"approx_{k}_content_ratio" for k in APPROXIMATION_KEYS}:
        return {"diagnostics", "latent"}
    raise KeyError(metric)


def describe() -> str:
    """The names, in one line (for error messages)."""
    return (f"{', '.join(EVAL_KEYS)}, train_seconds, probe_top1 (evaluate.probe); with diagnostics: "
            f"gap_<{'|'.join(GAP_SPACES)}>_<{'|'.join(GAP_SETS)}>_<kl|kl_excess|mmd2|mmd2_excess|mmd2_minus_tf>, "
            f"acc_<{'|'.join(ACCUMULATION_KEYS)}>, approx_<{'|'.join(APPROXIMATION_KEYS)}>_content_ratio")
