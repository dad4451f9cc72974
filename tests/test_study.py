"""Registered studies run in blocks (pra.study): the study file's rules, the registration a block needs, the
pooling of block records, and one real block in a clone."""
import json
import math
import shutil
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, run

from pra.config import ConfigError


def _study(**over):
    raw = {"name": "s", "code_hash": "x", "records": "reports/s/blocks",
           "blocks": [{"id": "b1", "experiment": "e.yaml", "ablation": "a", "seeds": [0, 1], "budget_hours": 1.0}]}
    raw.update(over)
    return raw


def _write(tmp_path, raw):
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("change, key", [
    ({"blocks": [{"id": f"b{i}", "experiment": "e.yaml", "ablation": "a", "seeds": [i]} for i in range(9)]},
     "at most 8 blocks"),
    ({"blocks": [{"id": "b1", "experiment": "e.yaml", "ablation": "a", "seeds": [0], "budget_hours": 3.0}]},
     "budget_hours"),
    ({"blocks": [{"id": "b", "experiment": "e.yaml", "ablation": "a", "seeds": [0]}] * 2}, "distinct id"),
    ({"blocks": [{"id": "b", "experiment": "e.yaml", "ablation": "a", "seeds": []}]}, "seeds"),
    ({"blocks": [{"id": "b", "experiment": "e.yaml", "ablation": "a", "seeds": [0], "phase": "main"}]}, "phase"),
    ({"bloks": []}, "bloks"),
    ({"deviations": "p0c withdrawn"}, "deviations"),
])
def test_study_file_errors_name_the_key(tmp_path, change, key):
    from pra.study import load_study

    assert load_study(_write(tmp_path, _study())).blocks[0].seeds == [0, 1]
    with pytest.raises(ConfigError, match=key):
        load_study(_write(tmp_path, _study(**change)))


def test_the_result_hash_covers_every_result_command_and_nothing_else(monkeypatch):
    """The registered hash changes with the code of any result-determining command (here: the train job's
    hash), and not with the code of a report-only command."""
    import pra.codehash as ch
    from pra.study import RESULT_COMMANDS, result_code_hash

    base = result_code_hash()
    real = ch.code_hash
    for cmd in ("train", "evaluate", "prepare"):
        assert cmd in RESULT_COMMANDS
        monkeypatch.setattr(ch, "code_hash", lambda c, _cmd=cmd: real(c) + ("!" if c == _cmd else ""))
        assert result_code_hash() != base, cmd
    monkeypatch.setattr(ch, "code_hash", lambda c: real(c) + ("!" if c == "report" else ""))
    assert result_code_hash() == base


def _experiment(name, variants, seeds, **extra):
    return {"name": name, "reports_dir": f"results/{name}/reports", "scales": ["tiny-XS"], "methods": ["pra"],
            "seeds": [seeds[0]], "data": {"root": f"results/{name}/raw/digits", "resolution": 16},
            "model": {"patch_size": 4, "z_dim": 2, "prefix_tokens": 4},
            "train": {"steps": 8, "batch_size": 8, "warmup_steps": 2, "log_every": 2, "ckpt_every": 8},
            "sample": {"per_class": 2, "batch_size": 20, "ode_steps": 2},
            "evaluate": {"classifier_epochs": 1, "probe": False},
            "ablations": [{"name": "cell", "scale": "tiny-XS", "seeds": seeds, "variants": variants}], **extra}


def test_a_block_runs_only_registered_seeds_and_doses(tmp_path):
    """A block's runs: its seeds of every variant of its ablation, in the experiment file laid over the
    project's config/config.yaml (as the Snakefile reads it)."""
    from pra.study import BlockConfig, block_runs

    (tmp_path / "config").mkdir()
    base = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    base["model"]["rope_theta"] = 50.0  # a project default the experiment does not set
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(_experiment(
        "e", [{"name": "tf", "method": "latent_tf"}, {"name": "pra t=1", "method": "pra",
                                                     "overrides": {"method": {"t_min": 1.0}}}], [0, 1, 2])))
    cfg, a, runs = block_runs(BlockConfig(id="b", experiment="e.yaml", ablation="cell", seeds=[1, 2]), tmp_path)
    assert cfg.model.rope_theta == 50.0 and cfg.model.patch_size == 4  # config.yaml's, then the experiment's
    assert sorted((v.name, r.seed) for v, r in runs) == [("pra t=1", 1), ("pra t=1", 2), ("tf", 1), ("tf", 2)]
    assert {r.variant for v, r in runs if v.name == "pra t=1"} == {"method.t_min=1.0"}
    with pytest.raises(ConfigError, match=r"seeds \[5\]"):
        block_runs(BlockConfig(id="b", experiment="e.yaml", ablation="cell", seeds=[1, 5]), tmp_path)
    with pytest.raises(ConfigError, match="no ablation 'other'"):
        block_runs(BlockConfig(id="b", experiment="e.yaml", ablation="other", seeds=[1]), tmp_path)
    tuned = _experiment("e", [{"name": "pra", "method": "pra"}], [0, 1])
    tuned["ablations"][0].update(tune_seed=9, tune_values={"t_min": [0.5, 0.75]})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tuned))
    with pytest.raises(ConfigError, match="tunes a noise knob"):
        block_runs(BlockConfig(id="b", experiment="t.yaml", ablation="cell", seeds=[0]), tmp_path)


def test_a_block_refuses_an_uncommitted_study_or_other_code(tmp_path):
    from pra.study import block_of, check_registered, load_study, result_code_hash

    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], cwd=repo)
    (repo / "e.yaml").write_text("name: e\n")
    (repo / "config").mkdir()
    (repo / "config/config.yaml").write_text("name: default\n")
    study = _write(repo, _study(code_hash=result_code_hash()))
    with pytest.raises(ConfigError, match="register first"):
        check_registered(study, load_study(study), block_of(load_study(study), "b1"), repo)
    run(["git", "add", "."], cwd=repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "register"], cwd=repo)
    reg = check_registered(study, load_study(study), block_of(load_study(study), "b1"), repo)
    assert reg["code_hash"] == result_code_hash() and len(reg["study_commit"]) == 40
    assert set(reg["command_hashes"]) >= {"train", "sample", "evaluate"} and len(reg["base_config_sha256"]) == 64
    (repo / "config/config.yaml").write_text("name: edited\n")  # the base config counts too
    with pytest.raises(ConfigError, match="register first"):
        check_registered(study, load_study(study), block_of(load_study(study), "b1"), repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "base config"], cwd=repo)
    other = _write(repo, _study(code_hash="0123456789abcdef"))
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "another hash"], cwd=repo)
    with pytest.raises(ConfigError, match="registered 0123456789abcdef"):
        check_registered(other, load_study(other), block_of(load_study(other), "b1"), repo)
    (repo / "e.yaml").write_text("name: changed\n")
    with pytest.raises(ConfigError, match="register first"):
        check_registered(other, load_study(other), block_of(load_study(other), "b1"), repo)


def _record(block, code="h1", exp="e1", train="t1", runs=(("pra", 0), ("tf", 0))):
    return {"block": {"id": block}, "registration": {"code_hash": code}, "experiment_sha256": exp,
            "run_records": [{"variant": v, "seed": s, "code_hash": {"train": train}} for v, s in runs]}


def test_blocks_pool_only_under_the_same_code_and_experiment():
    from pra.study import pool

    a, b = _record("b1"), _record("b2", runs=(("pra", 1), ("tf", 1)))
    assert len(pool([a, b])) == 4
    for bad in (_record("b2", code="h2", runs=(("pra", 1),)), _record("b2", exp="e2", runs=(("pra", 1),)),
                _record("b2", train="t2", runs=(("pra", 1),))):
        with pytest.raises(ValueError, match="cannot be pooled"):
            pool([a, bad])
    with pytest.raises(ValueError, match="recorded by blocks 'b1' and 'b2'"):
        pool([a, _record("b2")])
    pilot = _record("b2", runs=(("pra", 1),))
    pilot["block"]["phase"] = "pilot"
    with pytest.raises(ValueError, match="pilots"):
        pool([a, pilot])


def test_runs_built_by_other_code_are_named():
    from pra.study import off_registration

    registered = {"train": "T", "evaluate": "E", "gap": "G"}
    runs = [{"variant": "pra", "seed": 0, "code_hash": {"train": "T", "evaluate": "E", "gap": "G"}},
            {"variant": "tf", "seed": 1, "code_hash": {"train": "old", "evaluate": "E"}}]
    assert off_registration(runs, registered) == ["tf s1 train"]
    assert off_registration(runs[:1], registered) == []


@pytest.mark.slow  # a real Snakemake run of a block, in a clone
def test_a_registered_block_runs_and_records_every_run(tmp_path):
    repo = tmp_path / "clone"
    run(["git", "clone", "-q", str(ROOT), str(repo)])
    (repo / "experiments/tiny").mkdir(parents=True)
    exp = _experiment("tinyblock", [{"name": "tf", "method": "latent_tf"}, {"name": "pra", "method": "pra"}],
                      [0, 1, 2])
    (repo / "experiments/tiny/exp.yaml").write_text(yaml.safe_dump(exp))
    code = run([sys.executable, "-m", "pra", "study-hash"], cwd=repo).stdout.strip()
    study = _study(name="tiny", code_hash=code, records="reports/tiny/blocks",
                   blocks=[{"id": "b1", "experiment": "experiments/tiny/exp.yaml", "ablation": "cell",
                            "seeds": [1, 2], "budget_hours": 0.1},
                           {"id": "b2", "experiment": "experiments/tiny/exp.yaml", "ablation": "cell",
                            "seeds": [0], "budget_hours": 0.1}])
    (repo / "experiments/tiny/study.yaml").write_text(yaml.safe_dump(study))
    block = [sys.executable, "-m", "pra", "block", "--study", "experiments/tiny/study.yaml", "--block", "b1",
             "--cores", "2"]
    refused = run(block, cwd=repo, check=False)  # not committed yet: refused before anything runs
    assert refused.returncode == 2 and "register first" in refused.stderr and not (repo / "results").exists()
    run(["git", "add", "experiments/tiny"], cwd=repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "register"], cwd=repo)
    run(block, cwd=repo, timeout=900)
    out = repo / "reports/tiny/blocks/b1"
    rec = json.loads((out / "block.json").read_text())
    assert rec["registration"]["code_hash"] == code and rec["runs"] == 4 and rec["wall_seconds"] > 0
    assert rec["head_commit"] == rec["registration"]["study_commit"]
    assert rec["cpu_model"] and 1 < rec["matmul_gflops_1thread"] < 10_000 and rec["torch"]  # GFLOP/s
    runs = sorted(json.loads(p.read_text())["variant"] + str(json.loads(p.read_text())["seed"])
                  for p in (out / "runs").glob("*.json"))
    assert runs == ["pra1", "pra2", "tf1", "tf2"]
    one = json.loads(next((out / "runs").glob("base__pra__s1.json")).read_text())
    assert one["metrics"]["fid"] > 0 and one["steps"] == 8 and one["seconds_per_step"] > 0
    assert one["input_mse_last_fifth"] is not None and one["code_hash"]["train"]
    # the seed outside the block was not trained; the records pool
    assert not (repo / "results/tinyblock/runs/tiny-XS/pra/base/s0/model.pt").exists()
    from pra.study import load_records, pool

    assert len(pool(load_records(repo / "reports/tiny/blocks"))) == 4
    # rerunning the block resumes: nothing to train again; the record keeps both invocations
    again = json.loads(run(block, cwd=repo).stdout.strip().splitlines()[-1])
    assert again["runs"] == 4
    after = json.loads((out / "block.json").read_text())
    assert [i["targets_present_before"] for i in after["invocations"]] == [0, rec["targets"]]
    assert after["wall_seconds"] == pytest.approx(sum(i["wall_seconds"] for i in after["invocations"]))
    # the feature space the block scored in is recorded; a later block scoring in another one is refused before
    # it trains anything, and runs in the first one with the first block's classifier carried to it
    scorer = rec["scorer"]
    assert scorer["feature_network"] == "classifier" and scorer["classifier_source"] == "trained here"
    assert len(scorer["feature_sha256"]) == 64
    assert len(scorer["data_sha256"]) == 64 and len(scorer["reference_sha256"]) == 64
    carried = tmp_path / "carried"
    shutil.copytree(repo / "results/tinyblock/classifier", carried)
    from pra.evaluate.classifier import train_classifier

    from pra.study import npz_sha256

    train_classifier(repo / "results/tinyblock/data", repo / "results/tinyblock/classifier", epochs=1, seed=5)
    reference = repo / "results/tinyblock/reference/reference.npz"
    run(["snakemake", str(reference.relative_to(repo)), "--cores", "2", "--configfile", "experiments/tiny/exp.yaml"],
        cwd=repo)
    assert npz_sha256(reference) != scorer["reference_sha256"]  # now in the other classifier's space
    b2 = block[:-3] + ["b2", "--cores", "2"]
    refused = run(b2, cwd=repo, check=False)
    assert refused.returncode != 0 and "differs from the one blocks ['b1']" in refused.stderr, refused.stderr[-2000:]
    assert not (repo / "results/tinyblock/runs/tiny-XS/pra/base/s0").exists()
    # a folder that was not trained on these images is refused before Snakemake replaces anything
    bad = tmp_path / "bad"
    shutil.copytree(carried, bad)
    info = json.loads((bad / "classifier.json").read_text())
    (bad / "classifier.json").write_text(json.dumps({**info, "data_sha256": "0" * 64}))
    here = (repo / "results/tinyblock/classifier/classifier.pt").read_bytes()
    refused = run(b2 + ["--classifier", str(bad)], cwd=repo, check=False)
    assert refused.returncode == 2 and "--classifier: " in refused.stderr and "other images" in refused.stderr
    assert (repo / "results/tinyblock/classifier/classifier.pt").read_bytes() == here
    run(b2 + ["--classifier", str(carried)], cwd=repo, timeout=900)
    rec2 = json.loads((repo / "reports/tiny/blocks/b2/block.json").read_text())
    assert rec2["scorer"]["feature_sha256"] == scorer["feature_sha256"]
    assert rec2["scorer"]["classifier_source"] == f"carried from {carried.resolve()}"
    assert rec2["invocations"][-1]["classifier_dir"] == str(carried.resolve())
    # the reference statistics were rebuilt in the carried feature space: equal to the first block's
    assert rec2["scorer"]["reference_sha256"] == scorer["reference_sha256"]
    # leaving the carried classifier out later is refused, not retrained here
    again = run(b2, cwd=repo, check=False)
    assert again.returncode == 2 and "give --classifier again" in again.stderr, again.stderr[-2000:]
    assert len(pool(load_records(repo / "reports/tiny/blocks"))) == 6


def _pilot_block(fids: dict[str, list[float]]):
    runs = [{"variant": v, "seed": s, "metrics": {"fid": f, "kid": f / 1000}, "seconds_per_step": 0.1,
             "input_mse_last_fifth": 0.01, "code_hash": {"train": "t"}}
            for v, fs in fids.items() for s, f in enumerate(fs)]
    return {"block": {"id": "p", "purpose": "pilot", "budget_hours": 1.0}, "registration": {"code_hash": "h",
            "study_commit": "c" * 40}, "variants": list(fids), "run_records": runs, "wall_seconds": 3600.0,
            "matmul_gflops_1thread": 130.0, "cpu_model": "cpu",
            "invocations": [{"head_commit": "d" * 40, "matmul_gflops_1thread": 130.0, "targets_present_before": 0}]}


def test_pilot_estimates_known_ratios_and_the_seeds_they_imply():
    """An arm at exactly 0.8x another's FID on every seed reads a ratio of 0.8 with a zero-width interval and
    8/8 seeds lower; with seed noise the pairs are the paired t of the logs, seed by seed, and the seeds needed
    grow with that noise; the scaled wall time is the wall time times the ratio of matmul peaks."""
    from pra.paired import paired_t
    from pra.pilot import markdown, summarise

    rng = np.random.default_rng(0)
    base = np.exp(rng.normal(np.log(20), 0.1, 8))
    s = summarise(_pilot_block({"a": list(base * 0.8), "b": list(base)}))
    fid = next(p for p in s["pairs"] if p["metric"] == "fid")
    assert fid["estimate"] == pytest.approx(0.8) and fid["ci95"] == pytest.approx([0.8, 0.8])
    assert fid["a_lower_in"] == 8 and fid["correlation"] == pytest.approx(1.0)
    assert s["wall_hours_at_slow_machine"] == pytest.approx(130 / 65)
    a = base * 0.8 * np.exp(rng.normal(0, 0.1, 8))
    noisy = summarise(_pilot_block({"a": list(a), "b": list(base)}))
    got = next(p for p in noisy["pairs"] if p["metric"] == "fid")
    want = paired_t(a, base, log=True, level=0.95)  # whose coverage tests/test_paired.py checks
    assert got["estimate"] == pytest.approx(want.ratio) and got["ci95"] == pytest.approx(list(want.ratio_ci))
    wider = summarise(_pilot_block({"a": list(base * np.exp(rng.normal(0, 0.3, 8))), "b": list(base)}))
    assert wider["plan"]["seeds_to_detect"]["1.2"] > noisy["plan"]["seeds_to_detect"]["1.2"]
    assert "Pilot block p" in markdown(s, "src") and "| a vs b | fid (ratio a/b) | 0.8 |" in markdown(s, "src")


def test_pilot_reads_learning_curves_and_the_noise_of_two_samples():
    """With evaluation along training, the pilot tabulates the proxy FID per step (EMA and raw) and, from two
    samples of each final model whose log FIDs differ by +-d, reads a sampling sd of d/sqrt(2)."""
    from pra.pilot import markdown, summarise

    block = _pilot_block({"a": [10.0, 12.0], "b": [20.0, 22.0]})
    for r in block["run_records"]:
        r["steps"] = 200
        second = r["metrics"]["fid"] * math.exp(0.1 if r["seed"] == 0 else -0.1)
        r["along_training"] = [{"step": 100, "weights": w, "fid": 3 * r["metrics"]["fid"]} for w in ("ema", "raw")] + \
            [{"step": 200, "weights": "ema", "fid": second}, {"step": 200, "weights": "raw", "fid": second * 2}]
    s = summarise(block)
    assert [p["step"] for p in s["curves"]["a"]["ema"]] == [100, 200]
    assert s["curves"]["a"]["ema"][0]["fid_mean"] == pytest.approx(33.0)
    assert s["sampling_noise"]["a"]["sampling_sd_log"] == pytest.approx(0.1 / math.sqrt(2))
    assert s["sampling_noise"]["a"]["log_ratios"] == pytest.approx([-0.1, 0.1])
    assert "Along training" in markdown(s, "src") and "Sampling noise" in markdown(s, "src")


def test_pilot_plans_from_the_worse_of_two_spreads_and_refuses_missing_runs():
    """Negatively correlated arms: the observed differences spread more than correlation 0 assumes, and the
    plan uses the observed sd's upper confidence bound; a registered run without a record stops the summary."""
    from pra.pilot import summarise

    rng = np.random.default_rng(1)
    e = rng.normal(0, 0.1, 8)
    block = _pilot_block({"a": list(20 * np.exp(e)), "b": list(25 * np.exp(-e))})  # correlation -1
    q = summarise(block)["plan"]["pairs"][0]
    assert q["sd_observed"] > q["sd_correlation0"] and q["sd_observed_ucb80"] > q["sd_observed"]
    assert q["sd_of_differences"] == pytest.approx(q["sd_observed_ucb80"])
    assert q["pilot_ratio"] == pytest.approx(1.25, rel=0.2)
    block["block"]["seeds"] = list(range(9))
    with pytest.raises(ValueError, match="no record of the registered runs"):
        summarise(block)


def test_the_committed_study_resolves_every_block():
    """The settle2 study file as committed: every block names an ablation of its experiment file that runs
    registered doses on its seeds (what `python -m pra block` checks before it starts)."""
    from pra.study import block_runs, load_study

    study = load_study(ROOT / "experiments/settle2/study.yaml")
    for b in study.blocks:
        cfg, a, runs = block_runs(b, ROOT)
        assert runs and {r.seed for _, r in runs} == set(b.seeds), b.id
        assert {v.name for v, _ in runs} == {v.name for v in a.variants}, b.id


def _measured_study(tmp_path, fids: dict[str, list[float]], seeds_per_block, hypotheses):
    """A study with measurement blocks over an experiment in tmp_path, and their records written as
    `python -m pra block` writes them (per-run FIDs given)."""
    import hashlib

    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config/config.yaml").write_text((ROOT / "config/config.yaml").read_text())
    seeds = [s for b in seeds_per_block for s in b]
    exp = _experiment("e", [{"name": "tf", "method": "latent_tf"}, {"name": "pra", "method": "pra"},
                            {"name": "pra_t1", "method": "pra", "overrides": {"method": {"t_min": 1.0}}}], seeds)
    exp["ablations"][0].update(analysis="paired", hypotheses=hypotheses, equivalence_margin=1.2)
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(exp))
    blocks = [{"id": f"m{i}", "experiment": "e.yaml", "ablation": "cell", "seeds": b, "phase": "measurement"}
              for i, b in enumerate(seeds_per_block)]
    study = _write(tmp_path, _study(blocks=blocks, records="records"))
    sha = hashlib.sha256((tmp_path / "e.yaml").read_bytes()).hexdigest()
    for i, b in enumerate(seeds_per_block):
        out = tmp_path / "records" / f"m{i}"
        (out / "runs").mkdir(parents=True)
        for v, fs in fids.items():
            for s in b:
                rec = {"variant": v, "method": {"tf": "latent_tf"}.get(v, "pra"), "seed": s,
                       "metrics": {"fid": fs[seeds.index(s)], "kid": fs[seeds.index(s)] / 1000},
                       "code_hash": {"train": "t"}, "seconds_per_step": 0.2, "input_mse_last_fifth": 0.01}
                (out / "runs" / f"{v}_s{s}.json").write_text(json.dumps(rec))
        (out / "block.json").write_text(json.dumps({
            "block": blocks[i], "registration": {"code_hash": "h", "study_commit": "c" * 40,
                                                 "base_config_sha256": "b"},
            "experiment_sha256": sha, "ablation": "cell", "wall_seconds": 100.0,
            "invocations": [{"head_commit": "d" * 40}]}))
    return study


def test_the_study_analysis_tests_only_the_registered_family_on_every_registered_block(tmp_path):
    """Known answers: pra at exactly 0.8x latent_tf's FID on every seed is 'supported' (lower); pra_t1 within 2%
    of pra with seed noise far inside the margin reads equivalent by TOST; the family is the m = 2 declared
    hypotheses (Bonferroni 0.025), everything else an estimate. It refuses while a block is unrecorded and when
    the experiment file changed after the blocks ran."""
    from pra.study_analysis import analyse_study, markdown, ratio_figure

    rng = np.random.default_rng(1)
    base = np.exp(rng.normal(np.log(30), 0.1, 8))
    fids = {"tf": list(base), "pra": list(base * 0.8),
            "pra_t1": list(base * 0.8 * np.exp(rng.normal(0.0, 0.01, 8)))}
    hyps = [{"id": "C1", "statement": "pra below latent_tf", "variant": "pra", "reference": "tf", "expect": "lower"},
            {"id": "C2", "statement": "pra equals pra_t1", "variant": "pra", "reference": "pra_t1", "expect": "equal"}]
    study = _measured_study(tmp_path, fids, [[0, 1, 2, 3], [4, 5, 6, 7]], hyps)
    res = analyse_study(study, tmp_path)
    g = res["groups"][0]
    by = {h["id"]: h for h in g["hypotheses"]}
    assert by["C1"]["outcome"] == "supported" and by["C1"]["comparison"]["ratio"] == pytest.approx(0.8)
    assert by["C2"]["outcome"].startswith("supported: equivalent")
    assert g["analysis"]["m"] == 2 and g["analysis"]["level"] == pytest.approx(0.975)
    assert g["seeds"] == list(range(8)) and g["blocks"] == ["m0", "m1"]
    assert g["estimates"] == []  # both comparisons with the reference (pra) are hypotheses: counted once
    pairs = {(c["a"], c["b"], c["metric"]): c for c in g["all_pairs"]}
    assert len(pairs) == 6 and pairs[("tf", "pra", "fid")]["ratio"] == pytest.approx(1.25)
    assert pairs[("tf", "pra", "kid")]["level"] == pytest.approx(0.975)  # the family's level, as estimates
    text = markdown(res)
    assert "| C1 | pra below latent_tf |" in text and "registered at cccccccccc" in text
    ratio_figure(res, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0

    # noise: pra_t1 10% off pra on average with 30% seed noise cannot be shown equivalent within 1.2
    noisy = {**fids, "pra_t1": list(base * 0.88 * np.exp(rng.normal(0.0, 0.3, 8)))}
    res = analyse_study(_measured_study(tmp_path / "n", noisy, [[0, 1, 2, 3], [4, 5, 6, 7]], hyps), tmp_path / "n")
    c2 = next(h for h in res["groups"][0]["hypotheses"] if h["id"] == "C2")
    assert c2["outcome"].startswith("not shown") or c2["outcome"].startswith("contradicted")

    # a registered block without its record: nothing is tested
    import shutil
    shutil.rmtree(tmp_path / "records" / "m1")
    with pytest.raises(ConfigError, match=r"blocks \['m1'\] are registered and not yet recorded"):
        analyse_study(study, tmp_path)
    # the experiment file edited after the blocks ran
    study = _measured_study(tmp_path / "e2", fids, [[0, 1, 2, 3]], hyps)
    (tmp_path / "e2" / "e.yaml").write_text((tmp_path / "e2" / "e.yaml").read_text() + "# edited\n")
    with pytest.raises(ConfigError, match="changed after blocks"):
        analyse_study(study, tmp_path / "e2")


def test_the_equivalence_band_is_drawn_on_its_hypothesis_row():
    from pra.study_analysis import equivalence_rows

    hyps = [{"id": "C1", "expect": "lower"}, {"id": "C2", "expect": "lower"}, {"id": "C3", "expect": "equal"}]
    # three hypotheses and one estimate: drawn bottom-up as estimate (0), C3 (1), C2 (2), C1 (3)
    assert [(y, h["id"]) for y, h in equivalence_rows(hyps, 4)] == [(1, "C3")]
    assert [(y, h["id"]) for y, h in equivalence_rows(hyps[::-1], 3)] == [(2, "C3")]


def test_the_ratio_figure_labels_only_minor_ticks_that_cannot_collide():
    """A log axis from 0.15 to 6 has minor ticks at 0.2 ... 0.9 and 2 ... 9; labelling all of them overlaps.
    Only leading digits 2, 3 and 5 are labelled, at every decade."""
    from pra.study_analysis import minor_tick_label

    labelled = [x for x in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 2, 3, 4, 5, 6, 7, 8, 9, 20, 30, 40, 0.03, 0.04)
                if minor_tick_label(x)]
    assert labelled == [0.2, 0.3, 0.5, 2, 3, 5, 20, 30, 0.03]
    assert minor_tick_label(0.3) == "0.3" and minor_tick_label(-1.0) == "" and minor_tick_label(0.0) == ""


def test_a_narrow_ratio_axis_gets_round_ticks_and_a_wide_one_keeps_its_log_ticks():
    """An axis from 0.85 to 1.25 holds only the log ticks 0.9 and 1; up to a factor of 3 it gets about six round,
    evenly spaced ticks inside the axis, beyond it none (the log ticks stay)."""
    from pra.study_analysis import narrow_axis_ticks

    ticks = narrow_axis_ticks(0.85, 1.25)
    assert ticks and 4 <= len(ticks) <= 8 and all(0.85 <= t <= 1.25 for t in ticks)
    assert any(abs(t - 1.0) < 1e-12 for t in ticks) and any(t > 1.1 for t in ticks) and any(t < 0.95 for t in ticks)
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    assert narrow_axis_ticks(0.5, 1.5) is not None
    assert narrow_axis_ticks(0.15, 6.0) is None and narrow_axis_ticks(0.3, 1.0 / 0.3 * 1.01) is None


def test_narrow_axis_tick_labels_are_distinct_and_read_back_as_their_ticks():
    """On an axis from 0.98 to 1.23 ticks every 0.05 need two decimals: with two significant digits they read
    1, 1.1, 1.1, 1.1, 1.2."""
    from pra.study_analysis import narrow_axis_ticks, tick_labels

    for lo, hi in ((0.98, 1.23), (0.85, 1.25), (0.5, 1.5), (0.995, 1.012)):
        ticks = narrow_axis_ticks(lo, hi)
        labels = tick_labels(ticks)
        assert len(set(labels)) == len(labels), labels
        assert all(abs(float(lab) - t) < 1e-9 for lab, t in zip(labels, ticks)), (labels, ticks)
    assert tick_labels([1.0, 1.05, 1.1]) == ["1.00", "1.05", "1.10"] and tick_labels([1.0]) == ["1"]
