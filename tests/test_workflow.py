"""The Snakemake workflow itself: lint, dry run, and a real tiny run end to end."""
import json
import sys
import re
import uuid

import pytest
import yaml

from conftest import ROOT, run, snakemake



def test_lint_is_clean(tmp_path):
    p = run(snakemake(tmp_path, "--lint", "--configfile", ROOT / "config/config.yaml"), check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_dry_run_of_default_plans_the_whole_pipeline(tmp_path):
    """The default experiment's plan, rule by rule: one train/sample/evaluate/probe job per run of the plan
    (pra.plan.runs), one gap and accumulation job per diagnosed run, one job for everything shared."""
    from pra.config import load
    from pra.model.scales import SCALES
    from pra.plan import runs

    cfg = load(ROOT / "config/config.yaml", scales=SCALES)
    n = len(runs(cfg))
    p = run(snakemake(tmp_path, "-n", "all", "--quiet", "rules", "--configfile", ROOT / "config/config.yaml"))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", p.stdout + p.stderr, flags=re.M))
    want = {"train": n, "sample": n * cfg.sample.shards, "gather_samples": n, "evaluate": n, "prepare": 1,
            "train_classifier": 1, "reference": 1, "build_report": 1, "ablation": len(cfg.ablations)}
    if cfg.evaluate.probe:
        want["probe"] = n
    assert {k: int(counts.get(k, 0)) for k in want} == want, counts
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


@pytest.fixture()
def tiny_experiment(tmp_path):
    name = f"pytest-{uuid.uuid4().hex[:8]}"
    cfg = {
        "name": name, "reports_dir": f"results/{name}/reports", "scales": ["tiny-XS"],
        "methods": ["latent_tf", "pra"],
        "data": {"root": "data/digits", "resolution": 16},
        "model": {"patch_size": 4, "z_dim": 2, "prefix_tokens": 4},
        "train": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "log_every": 4, "ckpt_every": 8},
        "sample": {"per_class": 3, "batch_size": 30, "ode_steps": 2, "cfg_sweep": [1.0, 2.0], "sweep_per_class": 2},
        "evaluate": {"classifier_epochs": 1, "probe_epochs": 2, "probe_warmup_epochs": 1, "snapshot_every": 6,
                     "snapshot_per_class": 2, "diagnostic_images": 100, "diagnostic_permutations": 19,
                     "diagnostic_subsamples": 20},
        "speed": {"sample_precision": "bf16"},  # not the CPU default: to see the speed section reach the jobs
        # the tune checkpoint: pra's t_min chosen on seed 1, measured on seed 0; "pra z=3" fixes its own t_min
        "ablations": [{"name": "mini", "scale": "tiny-XS", "seeds": [0], "diagnostics": True, "tune_seed": 1,
                       "tune_values": {"t_min": [0.5, 0.75]},
                       "variants": [{"name": "tf", "method": "latent_tf"}, {"name": "pra", "method": "pra"},
                                    {"name": "pra z=3", "method": "pra",
                                     "overrides": {"model": {"z_dim": 3}, "method": {"t_min": 0.5}}}]}],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return name, path, tmp_path / "work"


@pytest.mark.slow  # a real pipeline run
def test_real_run_end_to_end(tiny_experiment):
    name, path, work = tiny_experiment
    run(snakemake(work, "--cores", "2", "all", "--configfile", path))
    res = work / "results" / name
    table = (res / "reports/tables/runs.md").read_text()
    assert "| tiny-XS | pra | base | 0 |" in table and "| tiny-XS | latent_tf | base | 0 |" in table
    assert "| tiny-XS | pra | method.t_min=0.5+model.z_dim=3 | 0 |" in table
    metrics = json.loads((res / "reports/metrics.json").read_text())
    assert metrics["tiny-XS/pra/base/s0"]["fid"] > 0
    clf = json.loads((res / "classifier/classifier.json").read_text())  # what check-rerun compares files by
    assert metrics["scoring"] == {"data": "embedded digits 16x16", "data_sha256": clf["data_sha256"],
                                  "feature_network": "classifier", "feature_sha256": clf["sha256"]}
    ablation = json.loads((res / "ablations/mini.json").read_text())
    assert [v["name"] for v in ablation["variants"]] == ["tf", "pra", "pra z=3"]
    # every per-run metric the summary holds is an endpoint the config accepts (pra.endpoints), and the
    # diagnostics' families are all there
    from pra.endpoints import needs
    names = {k for v in ablation["variants"] for k in v["metrics"]}
    assert all(needs(k) <= {"probe", "diagnostics", "latent"} for k in names)  # KeyError for an unknown one
    assert {"gap_inputs_pra_mmd2_excess", "acc_region_excess", "probe_top1", "train_seconds"} <= names, names
    # the tune checkpoint: pra's t_min chosen on the tuning seed by FID, the measurement run trained at the choice;
    # the variant that sets t_min itself is not tuned
    choices = json.loads((res / "tuning/mini.json").read_text())
    assert set(choices) == {"pra"}, choices
    scores = {s["value"]: s["fid"] for s in choices["pra"]["scores"]}
    for value, fid in scores.items():
        tuning_run = res / f"runs/tiny-XS/pra/method.t_min={value}/s1"
        assert json.loads((tuning_run / "eval.json").read_text())["fid"] == fid
    assert choices["pra"]["value"] == min(scores, key=scores.get)
    measured = {v["name"]: v for v in ablation["variants"]}
    assert measured["pra"]["variant"] == choices["pra"]["variant_id"] == f"method.t_min={choices['pra']['value']}"
    assert measured["pra z=3"]["tuning"] is None
    import torch

    chosen = torch.load(res / f"runs/tiny-XS/pra/{measured['pra']['variant']}/s0/model.pt", weights_only=False)
    assert chosen["config"]["method"]["t_min"] == choices["pra"]["value"]
    # the measurement run is evaluated along training and reported like every planned run
    along = (res / "reports/tables/along_training.md").read_text()
    for label in (f"tiny-XS pra [{measured['pra']['variant']}] s0", "tiny-XS pra [method.t_min=0.75] s1",
                  "tiny-XS latent_tf s0"):
        assert f"| {label} | 12 |" in along, label
    assert (res / "reports/tables/ablation_mini.md").exists()
    assert (res / "reports/figures/input_gap_mini.png").stat().st_size > 1000
    assert (res / "reports/figures/samples.png").stat().st_size > 1000
    # the default store: a SQLite file in the results folder (conftest clears MLFLOW_TRACKING_URI)
    tracking = json.loads((res / "tracking.json").read_text())
    assert tracking["tracking_uri"] == f"sqlite:///{(res / 'mlflow.db').resolve()}", tracking
    assert (res / "mlflow.db").exists()
    # every training run reached MLflow with its metrics
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{res / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    training = [r for r in runs if "pra.role" not in r.data.tags]
    # latent_tf; pra: the main grid's, two tuning runs, the tuned measurement run, z=3
    assert sorted(r.data.tags["method"] for r in training) == ["latent_tf"] + ["pra"] * 5
    assert all("loss" in r.data.metrics and "fid" in r.data.metrics for r in training)
    assert all(r.info.status == "FINISHED" for r in training)
    # how the samples behind each FID were drawn: the precision (this experiment sets bf16) and CUDA graphs (none
    # on the CPU) every shard recorded
    assert all(r.data.tags.get("sample_precision") == "bfloat16" and r.data.tags.get("sample_cuda_graphs") == "False"
               for r in training), [(r.data.tags.get("sample_precision"), r.data.tags.get("sample_cuda_graphs"))
                                    for r in training]
    # evaluation along training: the snapshot (step 6) and the final model (12), logged into each training run
    for r in training:
        history = client.get_metric_history(r.info.run_id, "along_fid_ema")
        assert sorted(m.step for m in history) == [6, 12], history
    assert "along_training" in (res / "reports/README.md").read_text()
    assert (res / "reports/figures/along_training.png").stat().st_size > 1000
    # the ablation: one parent, one child per variant, carrying the numbers of the JSON summary
    parent = client.get_run(ablation["mlflow_parent_run_id"])
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {c.data.params["variant"]: c for c in children}
    assert sorted(by_name) == ["pra", "pra z=3", "tf"]
    for v in ablation["variants"]:
        assert by_name[v["name"]].data.metrics["fid"] == pytest.approx(v["metrics"]["fid"]["mean"])
    # the HTML report bundles the figures with their rules
    html = res / "report.html"
    run(snakemake(work, "--report", html, "--configfile", path))
    text = html.read_text(errors="ignore")
    assert html.stat().st_size > 100_000
    for figure in ("samples.png", "along_training.png", "guidance.png", "input_gap_mini.png"):
        assert figure in text, figure
    for caption in ("workflow/report/figures/along_training.rst", "workflow/report/figures/guidance.rst"):
        first = (ROOT / caption).read_text().split()[:4]  # each figure's own caption, not the generic one
        assert " ".join(first) in text, caption
    # every run chose its guidance on the proxy and sampled at the choice
    for run_dir in (res / "runs").glob("*/*/*/s0"):
        chosen = json.loads((run_dir / "guidance.json").read_text())["chosen"]
        assert json.loads((run_dir / "eval.json").read_text())["sampling"]["cfg_scale"] == chosen
    # the speed section reached the sampling jobs (through PRA_SPEED_JSON, not the params)
    shard = json.loads((res / "runs/tiny-XS/pra/base/s0/samples/shard-0.json").read_text())
    assert shard["speed"] == {"precision": "bfloat16", "cuda_graphs": False}, shard["speed"]
    # nothing left to do afterwards, and changing an execution setting does not redo finished jobs
    p = run(snakemake(work, "-n", "all", "--configfile", path))
    assert "Nothing to be done" in p.stdout + p.stderr
    p = run(snakemake(work, "-n", "all", "--configfile", path, "--config", "speed={'sample_precision': 'fp32'}"))
    assert "Nothing to be done" in p.stdout + p.stderr


def _recovery_config(tmp_path, name):
    cfg = {"name": name, "reports_dir": f"results/{name}/reports", "scales": ["tiny-XS"], "methods": ["pra"],
           "data": {"root": "data/digits", "resolution": 16},
           "model": {"patch_size": 4, "z_dim": 2, "prefix_tokens": 4},
           "train": {"steps": 400, "batch_size": 8, "warmup_steps": 2, "log_every": 20, "ckpt_every": 10},
           "sample": {"per_class": 3, "batch_size": 30, "ode_steps": 2},
           "evaluate": {"classifier_epochs": 1, "probe": False}, "ablations": []}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_metrics(work, name):
    metrics = json.loads((work / "results" / name / "reports/metrics.json").read_text())
    keys = ("fid", "is", "kid", "precision", "recall", "class_accuracy")
    return {run: {k: v[k] for k in keys if k in v} for run, v in metrics.items() if isinstance(v, dict)}


@pytest.mark.slow  # a real pipeline run, killed and resumed
def test_killed_run_resumes_to_an_uninterrupted_runs_model(tmp_path):
    """SIGKILL to Snakemake and every job while a model trains; the README's recovery (the same command,
    `snakemake --unlock` when the lock was left behind) finishes the run, and its training log and weights
    equal an uninterrupted training's, bit for bit (the jobs after training are deterministic functions of
    the weights: tests/test_train_sample.py)."""
    import os
    import signal
    import subprocess
    import time

    import torch

    from pra.config import from_dict
    from pra.train import train

    name = f"pytest-crash-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    crash = _recovery_config(tmp_path, name)
    cmd = snakemake(work, "--cores", "2", "all", "--configfile")
    p = subprocess.Popen(cmd + [str(crash)], start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    run_dir = work / "results" / name / "runs/tiny-XS/pra/base/s0"
    state = run_dir / "state.pt"
    deadline = time.time() + 600
    while not state.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists(), "training never wrote a checkpoint before the kill"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run_dir / "model.pt").exists()
    again = run(cmd + [str(crash)], check=False)
    out = again.stdout + again.stderr
    if again.returncode != 0:  # the killed run's lock: released by `make run`'s release-lock, then the same command
        assert "LockException" in out or "cannot be locked" in out, out[-3000:]
        assert "IncompleteFilesException" not in out
        released = run([sys.executable, "-m", "pra", "release-lock", "--directory", str(work)])
        assert "released a stale lock" in released.stderr, released.stderr
        run(cmd + [str(crash)])
    assert "resumed from" in (run_dir / "train.log").read_text()
    assert _run_metrics(work, name) != {}

    resumed = torch.load(run_dir / "model.pt", weights_only=False)
    whole = tmp_path / "whole"
    train(from_dict(resumed["config"]), scale="tiny-XS", method="pra", seed=0, data_dir=work / "results" / name / "data",
          out_dir=whole, progress=False)
    assert (run_dir / "train_log.jsonl").read_text() == (whole / "train_log.jsonl").read_text()
    uninterrupted = torch.load(whole / "model.pt", weights_only=False)
    for part in ("model", "ema"):
        if part in uninterrupted:
            assert all(torch.equal(resumed[part][k], uninterrupted[part][k]) for k in uninterrupted[part]), part


def test_imagenet_experiment_plans_multi_gpu_jobs(tmp_path):
    """The paper-scale experiment, dry-run on a stand-in ImageNet folder: 8-GPU torchrun training for
    PRA-S/B, 4 nodes x 8 GPUs for PRA-L."""
    root = tmp_path / "imagenet"
    (root / "train" / "n01440764").mkdir(parents=True)
    (root / "val" / "n01440764").mkdir(parents=True)
    weights = tmp_path / "weights-inception.pth"
    weights.write_bytes(b"")
    batch = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    batch.write_bytes(b"")
    over = tmp_path / "paths.yaml"
    over.write_text(yaml.safe_dump({"name": f"dry-{uuid.uuid4().hex[:6]}",
                                    "data": {"root": str(root)}, "evaluate": {"inception_weights": str(weights),
                                                                              "inception_sha256_prefix": "",
                                                                              "reference_stats": str(batch)}}))
    p = run(snakemake(tmp_path / "work", "-n", "-p", "all", "--configfile", ROOT / "experiments/imagenet256.yaml",
                      over))
    out = p.stdout + p.stderr
    train_cmds = [ln for ln in out.splitlines() if " -m pra train " in ln]
    for scale in ("PRA-S", "PRA-B"):
        cmds = [ln for ln in train_cmds if f"--scale {scale} --method pra" in ln]
        assert cmds and all("pra torchrun --standalone --nproc_per_node=8 -m pra train" in ln for ln in cmds)
    cmds = [ln for ln in train_cmds if "--scale PRA-L --method pra" in ln]
    assert cmds and all("python -m pra launch --nodes 4 --procs-per-node 8 -- -m pra train" in ln for ln in cmds)
    assert "gpu=8" in out and "runtime=2880" in out  # PRA-L's per-scale runtime
    assert re.search(r"gpu=0, gres=gpu:8, nodes=4, tasks=4, tasks_per_gpu=0, mpi=srun", out), out[-3000:]
    assert "train_classifier" not in out  # Inception features: no digits classifier
    # ADM's reference batch is an input of the reference job: a replaced file reruns its conversion
    block = out[out.index("rule reference:"):]
    assert str(batch) in block[:block.index("output:")]
    # the guidance is chosen per run on a 5K proxy sample, then the 50K sample is drawn at the choice
    sweeps = [ln for ln in out.splitlines() if " -m pra sweep-guidance " in ln]
    samples = [ln for ln in out.splitlines() if " -m pra sample " in ln]
    assert sweeps and len(samples) == 32 * len(sweeps)
    assert all("--guidance results/" in ln and ln.count("guidance.json") == 1 for ln in samples), samples[:1]
