"""Tuning of noise knobs: the same budget for every knob, the choice made on the held-out seed only."""
import pytest

from pra.config import ConfigError, ExperimentConfig
from pra import plan
from pra.plan import variant_id
from pra.plan import ablation_runs, choose, tuned_variants, tuning_runs


def _cfg(**ablation):
    a = dict(name="settle", scale="tiny-XS", seeds=[1, 2], tune_seed=0,
             tune_values={"t_min": [0.25, 0.75], "pixel_noise_sigma": [0.1, 0.3]},
             variants=[{"name": "pixel_tf", "method": "pixel_tf"}, {"name": "pixel_noise", "method": "pixel_noise"},
                       {"name": "pra", "method": "pra"},
                       {"name": "pra fixed", "method": "pra", "overrides": {"method": {"t_min": 0.5}}}])
    a.update(ablation)
    return ExperimentConfig().replace(ablations=[a])


def test_every_knob_arm_is_tuned_on_the_held_out_seed_with_the_same_number_of_values():
    a = _cfg().ablations[0]
    assert [t.variant.name for t in tuned_variants(a)] == ["pixel_noise", "pra"]  # "pra fixed" sets its own
    runs = tuning_runs(a)
    assert len(runs) == 4 and {r.seed for _, _, r in runs} == {0}
    assert {r.variant for _, _, r in runs} == {"method.pixel_noise_sigma=0.1", "method.pixel_noise_sigma=0.3",
                                               "method.t_min=0.25", "method.t_min=0.75"}
    # measurement runs of tuned variants are unknown until the choice is made
    cfg = _cfg()
    assert not any(r.variant.startswith("method.t_min=0.7") and r.seed in (1, 2) for r in plan.runs(cfg))
    with pytest.raises(ValueError, match="python -m pra tune"):
        ablation_runs(a)


def test_the_choice_follows_the_primary_metric_and_fixes_the_measured_runs():
    a = _cfg().ablations[0]
    choices = choose(a, {"pixel_noise": {0.1: 9.0, 0.3: 8.0}, "pra": {0.25: 5.0, 0.75: 6.0}})
    assert choices["pixel_noise"]["value"] == 0.3 and choices["pra"]["value"] == 0.25
    runs = {(v.name, r.seed): r.variant for v, r in ablation_runs(a, choices)}
    assert runs[("pra", 1)] == runs[("pra", 2)] == variant_id({"method": {"t_min": 0.25}})
    assert runs[("pixel_tf", 1)] == "base" and runs[("pra fixed", 2)] == "method.t_min=0.5"
    higher = _cfg(primary_metric="class_accuracy").ablations[0]
    assert choose(higher, {"pixel_noise": {0.1: 0.9, 0.3: 0.8}, "pra": {0.25: 0.5, 0.75: 0.6}})["pra"]["value"] == 0.75


@pytest.mark.parametrize("change, key", [
    ({"tune_values": {"t_min": [0.25, 0.5, 0.75], "pixel_noise_sigma": [0.1, 0.3]}}, "same number of values"),
    ({"tune_seed": 1}, "also a measurement seed"),
    ({"tune_values": {"lr": [0.1, 0.2]}}, "not a noise knob"),
    ({"tune_values": {"t_min": [0.5, 1.5]}}, "above the maximum"),
])
def test_invalid_tuning_is_rejected_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        _cfg(**change)


V = [{"name": "a", "method": "pra"}, {"name": "b", "method": "latent_tf"}]


@pytest.mark.parametrize("ablations, key, message", [
    ([{"name": "x", "scale": "tiny-XS", "variants": V}, {"name": "x", "scale": "tiny-XS", "variants": V}],
     "ablations", "duplicate ablation names"),
    ([{"name": "x", "scale": "huge", "variants": V}], "ablations[0].scale", "unknown scale"),
    ([{"name": "x", "scale": "tiny-XS", "variants": []}], "ablations[0].variants", "must not be empty"),
    ([{"name": "x", "scale": "tiny-XS", "variants": [V[0], V[0]]}], "ablations[0].variants", "duplicate variant"),
    ([{"name": "x", "scale": "tiny-XS", "variants": [{"name": "a"}]}], "ablations[0].variants[0].method",
     "no method"),
    ([{"name": "x", "scale": "tiny-XS", "variants": [{"name": "a", "method": "pra", "overrides": {"seeds": [1]}}]}],
     "ablations[0].variants[0].overrides.seeds", "can be overridden"),
    ([{"name": "x", "scale": "tiny-XS", "variants": [{"name": "a", "method": "pra",
                                                    "overrides": {"model": {"z_dim": -1}}}]}],
     "ablations[0].variants[0].overrides", "model.z_dim"),
    ([{"name": "x", "scale": "tiny-XS", "tune_seed": 9, "variants": V}], "ablations[0].tune_values", "required"),
    ([{"name": "x", "scale": "tiny-XS", "tune_seed": 9, "tune_values": {"t_min": [0.5, 0.5]}, "variants": V}],
     "ablations[0].tune_values.t_min", "duplicate values"),
    ([{"name": "x", "scale": "tiny-XS", "reference": "c", "variants": V}], "ablations[0].reference",
     "is not a variant"),
    ([{"name": "x", "scale": "tiny-XS", "variants": V,
       "hypotheses": [{"id": "H1", "metric": "fid", "variant": "a", "reference": "zz", "expect": "lower"}]}],
     "ablations[0].hypotheses[0].reference", "is not a variant"),
    # a seed twice would be pooled as independent seeds (a zero-variance "test")
    ([{"name": "x", "scale": "tiny-XS", "seeds": [1, 1], "variants": V}], "ablations[0].seeds", "appears twice"),
    ([{"name": "a/b c", "scale": "tiny-XS", "variants": V}], "ablations[0].name", "does not match"),
    # endpoints are checked by name, and against what the ablation measures
    ([{"name": "x", "scale": "tiny-XS", "variants": V, "primary_metric": "fidd"}], "ablations[0].primary_metric",
     "not a per-run metric"),
    ([{"name": "x", "scale": "tiny-XS", "variants": V,
       "hypotheses": [{"id": "H1", "metric": "fiid", "variant": "a", "reference": "b", "expect": "lower"}]}],
     "ablations[0].hypotheses[0].metric", "not a per-run metric"),
    ([{"name": "x", "scale": "tiny-XS", "variants": V,
       "hypotheses": [{"id": "H1", "metric": "gap_inputs_pra_mmd2_excess", "variant": "a", "reference": "a",
                       "reference_metric": "gap_inputs_teacher_forcing_mmd2_excess", "expect": "lower"}]}],
     "ablations[0].hypotheses[0].metric", "only with diagnostics"),
    ([{"name": "x", "scale": "tiny-XS", "variants": V, "diagnostics": True,
       "hypotheses": [{"id": "H1", "metric": "gap_inputs_pra_mmd2_excess", "variant": "a", "reference": "a",
                       "reference_metric": "gap_inputs_teacher_forcing_mmd2_excesss", "expect": "lower"}]}],
     "ablations[0].hypotheses[0].reference_metric", "not a per-run metric"),
    # tuning chooses on the tuning runs' sample metrics only
    ([{"name": "x", "scale": "tiny-XS", "tune_seed": 9, "tune_values": {"t_min": [0.5, 0.75]}, "variants": V,
       "diagnostics": True, "primary_metric": "gap_inputs_pra_mmd2_excess"}], "ablations[0].primary_metric",
     "tuning"),
    # a latent construction's gap exists only for a latent model; the null has no excess over itself
    ([{"name": "x", "scale": "tiny-XS", "diagnostics": True,
       "variants": [{"name": "a", "method": "pra"}, {"name": "p", "method": "pixel_noise"}],
       "hypotheses": [{"id": "H1", "metric": "gap_inputs_pra_mmd2_excess", "variant": "p", "reference": "a",
                       "expect": "lower"}]}], "ablations[0].hypotheses[0].metric", "latent method"),
    ([{"name": "x", "scale": "tiny-XS", "variants": V, "diagnostics": True,
       "hypotheses": [{"id": "H1", "metric": "gap_inputs_rollout_null_mmd2_excess", "variant": "a", "reference": "b",
                       "expect": "lower"}]}], "ablations[0].hypotheses[0].metric", "not a per-run metric"),
    # tuning with no variant to tune
    ([{"name": "x", "scale": "tiny-XS", "tune_seed": 9, "tune_values": {"pixel_noise_sigma": [0.1, 0.2]},
       "variants": V}], "ablations[0].tune_seed", "no variant has a knob"),
])
def test_ablation_cross_checks_name_the_key(ablations, key, message):
    from pra.config import from_dict
    from pra.model.scales import SCALES

    with pytest.raises(ConfigError, match=message) as e:
        from_dict({"ablations": ablations}, scales=SCALES)
    assert key in str(e.value), str(e.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "3\n"])
def test_a_yaml_whose_top_level_is_not_a_mapping_is_rejected(tmp_path, text):
    from pra.config import load

    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(p)


def test_the_report_lists_the_measurement_runs_of_tuned_variants(tmp_path):
    """plan.runs knows only what exists before tuning; the report adds the tuned arms' measurement runs
    (metrics.json, the runs table) once the choice is made."""
    import json

    from pra.report.build import measurement_runs

    cfg = _cfg()
    a = cfg.ablations[0]
    choices = choose(a, {"pixel_noise": {0.1: 9.0, 0.3: 8.0}, "pra": {0.25: 5.0, 0.75: 6.0}})
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "settle.json").write_text(json.dumps(choices))
    extra = measurement_runs(cfg, tmp_path)
    assert {(r.method, r.variant, r.seed) for r in extra} == {
        ("pixel_noise", "method.pixel_noise_sigma=0.3", 1), ("pixel_noise", "method.pixel_noise_sigma=0.3", 2),
        ("pra", "method.t_min=0.25", 1), ("pra", "method.t_min=0.25", 2)}
    assert not set(extra) & set(plan.runs(cfg))
