import json
import re

import pytest
import yaml

from pra.config import ConfigError, ExperimentConfig, from_dict, json_schema, load, reconstructions
from pra.model.scales import SCALES
from conftest import ROOT, run, snakemake


def test_defaults_equal_config_yaml():
    assert load(ROOT / "config/config.yaml") == ExperimentConfig()


def test_schema_file_in_sync():
    on_disk = json.loads((ROOT / "workflow/schemas/config.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), "run: python -m pra schema --out workflow/schemas/config.schema.json"


@pytest.mark.parametrize("raw, key", [
    ({"trian": {}}, "trian"),
    ({"train": {"stpes": 3}}, "train.stpes"),
    ({"train": {"steps": "many"}}, "train.steps"),
    ({"train": {"steps": 0}}, "train.steps"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"methods": ["pra", "magic"]}, "methods"),
    ({"scales": ["PRA-XXL"]}, "scales"),
    ({"data": {"channels": 2}}, "data.channels"),
    ({"model": {"patch_size": 5}}, "model.patch_size"),
    ({"method": {"p_sample": 1.5}}, "method.p_sample"),
    ({"sample": {"cfg_interval": [0.8, 0.2]}}, "sample.cfg_interval"),
    # a warm-up longer than the run: the learning rate never reaches its peak, the decay never runs
    ({"train": {"steps": 100, "warmup_steps": 5000}}, "train.warmup_steps"),
    ({"train": {"lr": "1e-3x"}}, "train.lr"),
    ({"model": {"decoder_context": "yes"}}, "model.decoder_context"),
    # ADM's statistics are in Inception's features: without its weights samples would be scored in another space
    ({"evaluate": {"reference_stats": "VIRTUAL_imagenet256_labeled.npz"}}, "evaluate.reference_stats"),
    # a seed twice would be pooled as two independent runs; seeds name folders (s<seed>)
    ({"seeds": [0, 0]}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"methods": ["pra", "pra"]}, "methods"),
    # NaN passes every comparison with a bound, infinity the lower ones
    ({"train": {"lr": float("nan")}}, "train.lr"),
    ({"train": {"lr": float("inf")}}, "train.lr"),
    ({"method": {"t_min": float("nan")}}, "method.t_min"),
    ({"sample": {"cfg_sweep": [1.0, float("nan")]}}, "sample.cfg_sweep"),
    # names become folders and shell words
    ({"name": "../../escape"}, "name"),
    ({"name": ""}, "name"),
    ({"resources": {"scale_overrides": {"tinyXS": {"train_gpus": 2}}}}, "resources.scale_overrides.tinyXS"),
    ({"evaluate": {"probe": False}, "ablations": [{"name": "x", "scale": "tiny-XS", "primary_metric": "probe_top1",
                                                  "variants": [{"name": "a", "method": "pra"}]}]},
     "ablations[0].primary_metric"),
    # the anchored methods start their head ODE on the flow's path: the interpolant only
    ({"methods": ["pra", "anchored_rollout"], "method": {"perturbation_law": "additive"}, "ablations": []},
     "method.perturbation_law"),
    ({"method": {"perturbation_law": "gaussian"}}, "method.perturbation_law"),
    ({"ablations": [{"name": "x", "scale": "tiny-XS", "variants": [
        {"name": "a", "method": "pra"},
        {"name": "b", "method": "parallel_anchored", "overrides": {"method": {"perturbation_law": "variance_preserving"}}}]}]},
     "ablations[0].variants[1]"),
    # a global law reaches an anchored variant that does not override it
    ({"method": {"perturbation_law": "additive"}, "ablations": [{"name": "x", "scale": "tiny-XS", "variants": [
        {"name": "a", "method": "pra"}, {"name": "b", "method": "anchored_rollout"}]}]},
     "ablations[0].variants[1]"),
])
def test_invalid_values_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        from_dict(raw, scales=SCALES)


def test_schema_agrees_with_validator():
    import jsonschema

    schema = json_schema()
    jsonschema.validate(ExperimentConfig().to_dict(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"train": {"steps": 0}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"train": {"bogus": 1}}, schema)
    for bad in ({"seeds": [1, 1]}, {"seeds": [-1]}, {"name": "a/b"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_every_reconstruction_is_marked_in_config_yaml():
    lines = (ROOT / "config/config.yaml").read_text().splitlines()
    for r in reconstructions():
        section, key = r["key"].split(".")
        hits = [ln for ln in lines if re.match(rf"\s+{key}:", ln)]
        assert hits, f"{r['key']} missing from config.yaml"
        assert all("reconstruction" in ln for ln in hits), f"{r['key']} is not marked as a reconstruction"


def test_experiment_files_are_valid():
    for p in sorted((ROOT / "experiments").glob("*.yaml")):
        load(ROOT / "config/config.yaml", p)


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "train": {"stpes": 10}}))
    work = tmp_path / "work"
    p = run(snakemake(work, "all", "--cores", "1", "--configfile", bad), check=False)  # a real run, not -n
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "invalid configuration: unknown config key 'train.stpes'" in out  # the typed error, not a schema dump
    assert not (work / "results").exists() and not (work / "data").exists()  # no job started

    # a section given twice: YAML keeps the later one; the run refuses instead of dropping the earlier
    bad.write_text("name: bad\ntrain: {steps: 10}\nsample: {cfg: 2.0}\ntrain: {batch_size: 8}\n")
    p = run(snakemake(work, "-n", "all", "--configfile", bad), check=False)
    assert p.returncode != 0 and "key 'train' appears twice in one mapping" in p.stdout + p.stderr
    # an exponent float, which Snakemake's YAML 1.1 loader passes as text, is read as the float it is
    bad.write_text("name: fine\ntrain: {lr: 1e-3}\n")
    assert run(snakemake(work, "-n", "all", "--configfile", bad), check=False).returncode == 0

    bad.write_text(yaml.safe_dump({"name": "bad", "train": {"steps": -1}}))
    p = run(snakemake(work, "-n", "all", "--configfile", bad), check=False)
    assert p.returncode != 0 and "steps" in p.stdout + p.stderr

    # a local file the config names must exist (else a job would fail on it after hours of training)
    (tmp_path / "inception.pth").touch()
    for key, value in (("evaluate", {"reference_stats": str(tmp_path / "VIRTUAL.npz"),
                                     "inception_weights": str(tmp_path / "inception.pth")}),
                       ("resources", {"container": str(tmp_path / "pra.sif")})):
        bad.write_text(yaml.safe_dump({"name": "bad", key: value}))
        p = run(snakemake(work, "-n", "all", "--configfile", bad), check=False)
        assert p.returncode != 0 and f"{key}.{next(iter(value))}" in p.stdout + p.stderr, p.stderr[-2000:]
        assert "does not exist" in p.stdout + p.stderr
    # Inception weights other than the published file (by its digest) are refused before any job starts
    bad.write_text(yaml.safe_dump({"name": "bad", "evaluate": {"inception_weights": str(tmp_path / "inception.pth")}}))
    p = run(snakemake(work, "-n", "all", "--configfile", bad), check=False)
    assert p.returncode != 0 and "does not start with 6726825d" in p.stdout + p.stderr, p.stderr[-2000:]
    assert "inception_sha256_prefix" in p.stdout + p.stderr


def test_cli_reports_bad_json_and_a_missing_folder_without_a_traceback():
    p = run(["python", "-m", "pra", "config", "--config-json", "{bad"], check=False)
    assert p.returncode == 2 and "--config-json: not JSON" in p.stderr and "Traceback" not in p.stderr
    p = run(["python", "-m", "pra", "release-lock", "--directory", "/nonexistent/folder"], check=False)
    assert p.returncode == 1 and "no such directory" in p.stderr and "Traceback" not in p.stderr


def test_cli_reports_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  z_dim: -3\n")
    p = run(["python", "-m", "pra", "config", "--config", str(bad)], check=False)
    assert p.returncode == 2 and "model.z_dim" in p.stderr


def test_a_config_file_is_read_strictly(tmp_path):
    """A key given twice in one mapping is an error naming the file and the key (a plain YAML loader keeps the
    later section and drops the earlier one without a word), in YAML and in JSON; a syntax error is a config
    error naming the file; values resolve as yaml.safe_load (Snakemake's loader) resolves them, so anchors,
    merge keys and tabs in JSON work and a dumped config reads back as it was; exponent floats (1e-3, which
    YAML 1.1 reads as text) are accepted where a float is expected, and only there."""
    import json as _json

    from pra.config import ConfigError, ExperimentConfig, from_dict, load

    dup = tmp_path / "dup.yaml"
    dup.write_text("train: {steps: 10, lr: 0.5}\nsample: {cfg: 2.0}\ntrain: {batch_size: 8}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: .*key 'train' appears twice in one mapping \(first on line 1\)"):
        load(dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  steps: 10\n  lr: 0.5\n  steps: 20\n")
    with pytest.raises(ConfigError, match="key 'steps' appears twice"):
        load(nested)
    dup_json = tmp_path / "dup.json"
    dup_json.write_text('{"train": {"steps": 10},\n\t"train": {"lr": 0.5}}')
    with pytest.raises(ConfigError, match="dup.json: key 'train' appears twice in one object"):
        load(dup_json)
    tabs = tmp_path / "tabs.json"
    tabs.write_text('{\n\t"train": {"steps": 30, "warmup_steps": 3}\n}')
    assert load(tabs).train.steps == 30
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: 10\n   lr: 1\n")
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml: not valid YAML.*bad.yaml\", line 3"):
        load(bad)
    merged = tmp_path / "merged.yaml"  # an anchor and a merge key: one variant's overrides extended by another
    merged.write_text("ablations:\n  - name: a\n    scale: tiny-S\n    variants:\n"
                      "      - {name: x, method: pra, overrides: &o {method: {t_min: 0.4}}}\n"
                      "      - name: y\n        method: pra\n        overrides:\n          <<: *o\n"
                      "          model: {z_dim: 3}\n")
    variants = load(merged).ablations[0].variants
    assert variants[1].overrides == {"method": {"t_min": 0.4}, "model": {"z_dim": 3}}
    dumped = tmp_path / "dumped.yaml"
    cfg = ExperimentConfig().replace(name="1e3", train={"lr": 2e-4})
    dumped.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load(dumped) == cfg  # a dumped config reads back as it was (the name stays text)
    exp = tmp_path / "exp.yaml"
    exp.write_text("train:\n  lr: 1e-3\n  weight_decay: 5E-2\n  warmup_steps: 10\n")
    cfg = load(exp)
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 0.05 and cfg.train.warmup_steps == 10
    assert from_dict({"train": {"lr": "2e-4"}, "sample": {"cfg_sweep": ["1e0", 2.0]}}).train.lr == 2e-4
    for text in ("1_e3", "1e", "e3", "0x1p3", "1e-3x"):
        with pytest.raises(ConfigError, match="config key 'train.lr': expected float"):
            from_dict({"train": {"lr": text}})
    with pytest.raises(ConfigError, match="config key 'name'"):  # text stays text where text is expected
        from_dict({"name": 1e3})
    assert from_dict({"name": "1e3"}).name == "1e3"
    assert _json.loads(_json.dumps(cfg.to_dict())) == cfg.to_dict()



def test_a_variant_may_change_the_perturbation_law_beside_anchored_methods_of_the_main_grid():
    """The law is refused only where an anchored method would train with it: a pra variant with another law is
    valid in an experiment whose main grid trains anchored_rollout with the interpolant."""
    cfg = from_dict({"methods": ["pra", "anchored_rollout"], "ablations": [{"name": "law", "scale": "tiny-XS", "variants": [
        {"name": "interp", "method": "pra"},
        {"name": "vp", "method": "pra", "overrides": {"method": {"perturbation_law": "variance_preserving"}}},
        {"name": "anch", "method": "anchored_rollout"}]}]}, scales=SCALES)
    assert cfg.with_overrides(cfg.ablations[0].variants[1].overrides).method.perturbation_law == "variance_preserving"
