"""`snakemake --profile slurm all` on a real single-node Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd)."""
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, snakemake

# a real Slurm cluster, one per machine: its tests run in one pytest-xdist worker, one after another
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

START = ROOT / "tests" / "slurm" / "start_cluster.sh"


@pytest.fixture(scope="module")
def slurm():
    p = subprocess.run([str(START)], check=False, capture_output=True, text=True, timeout=300)
    if p.returncode == 3:
        pytest.skip(f"single-node Slurm cannot run here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stdout + p.stderr
    return True


def test_profile_runs_the_pipeline_on_slurm(slurm, tmp_path):
    _, path, res, _ = _experiment(
        tmp_path, "slurm",
        train={"steps": 10, "batch_size": 8, "warmup_steps": 2, "log_every": 5, "ckpt_every": 5},
        sample={"per_class": 2, "batch_size": 20, "ode_steps": 2, "shards": 2},
        evaluate={"classifier_epochs": 1, "probe_epochs": 2, "probe_warmup_epochs": 1})
    env = _env()
    try:
        p = subprocess.run(_snakemake("all", path), check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=1500)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
        assert (res / "reports/tables/runs.md").exists() and (res / "reports/metrics.json").exists()
        metrics = json.loads((res / "reports/metrics.json").read_text())
        assert metrics["tiny-XS/pra/base/s0"]["fid"] > 0
        # the jobs really went through Slurm and its accounting
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-1hour", "--format", "JobName,State"],
                              check=False, env=env, capture_output=True, text=True).stdout
        done = [ln for ln in acct.splitlines() if ln.endswith("COMPLETED")]
        assert len(done) >= 7, acct  # prepare, classifier, reference, train, 2 sample shards, evaluate, probe
    finally:
        shutil.rmtree(res, ignore_errors=True)


def _env() -> dict:
    """sbin on PATH for the Slurm tools."""
    return {**os.environ, "PATH": f"/usr/sbin:{os.environ['PATH']}"}


def _experiment(tmp_path, prefix: str, **sections):
    """A tiny-XS pra experiment (16x16 digits, 4x4 patches) with the given config sections on top, whose
    working directory is a temporary folder (`work`, shared with the Slurm jobs: one host); returns its name,
    config file, results folder and the folder of its one training run."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cfg = {"name": name, "reports_dir": f"results/{name}/reports", "scales": ["tiny-XS"], "methods": ["pra"],
           "data": {"root": f"results/{name}/raw/digits", "resolution": 16},
           "model": {"patch_size": 4, "z_dim": 2, "prefix_tokens": 4}, "ablations": [], **sections}
    path = tmp_path / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = tmp_path / "work" / "results" / name
    return name, path, res, res / "runs/tiny-XS/pra/base/s0"


def _snakemake(target, path, *extra) -> list[str]:
    """`snakemake --profile slurm` on a target (relative to the results folder's working directory, `path`'s
    folder / work) with quick status checks."""
    return snakemake(Path(path).parent / "work", "--profile", ROOT / "slurm", target, "--configfile", path, *extra,
                     "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2")


@pytest.fixture()
def two_nodes(slurm):
    nodes = subprocess.run(["sinfo", "-h", "-N", "-p", "multi", "-o", "%N"], check=False, env=_env(),
                           capture_output=True, text=True).stdout.split()
    if len(set(nodes)) < 2:
        pytest.skip(f"the test cluster has no two-node partition `multi` (nodes: {nodes})")


def _assert_one_run_across(res, name: str, resumed_at: int) -> None:
    """The experiment's MLflow store holds one run, whose loss was logged before and after the resume."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{res / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert min(steps) < resumed_at < max(steps), (resumed_at, min(steps), max(steps))


def _wait(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_timed_out_training_is_retried_and_resumes(slurm, tmp_path):
    """A training job that hits its Slurm time limit (SIGTERM, KillWait, SIGKILL; state TIMEOUT) writes
    state.pt; Snakemake's retry resubmits it with a doubled runtime and it continues where it stopped: every
    step is logged once, and the retry logs into the first attempt's MLflow run."""
    name, path, res, run_dir = _experiment(
        tmp_path, "slurm-timeout",
        # far more steps than fit in the 1-minute limit: the first attempt always times out
        train={"steps": 1000000, "batch_size": 8, "warmup_steps": 2, "log_every": 10, "ckpt_every": 10 ** 9},
        resources={"train_runtime": 1})
    env = _env()
    log, text_log = run_dir / "train_log.partial.jsonl", run_dir / "train.log"
    smk = subprocess.Popen(_snakemake((run_dir / "model.pt").relative_to(tmp_path / "work"), path),
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: text_log.exists() and "resumed from" in text_log.read_text(), 400,
              "the retry of the timed-out training job to resume")
        resumed_at = int(text_log.read_text().split("resumed from")[1].split("at step")[1].split()[0])
        assert resumed_at > 0
        _wait(lambda: int(json.loads(log.read_text().splitlines()[-1])["step"]) >= resumed_at + 30, 300,
              "the resumed run to log 3 more lines")
        # stop here: Snakemake is killed and its jobs cancelled directly (its own Ctrl-C shutdown waits on the
        # cancelled jobs' states for minutes and is not what this test checks)
        smk.kill()
        out, _ = smk.communicate()
        train_jobs = re.findall(r"SLURM jobid (\d+) \(log: \S*rule_train", out)
        assert len(train_jobs) >= 2, out[-3000:]
        subprocess.run(["scancel", *train_jobs], check=False, env=env)
        _wait(lambda: not subprocess.run(["squeue", "-h", "-j", ",".join(train_jobs)], check=False, env=env,
                                         capture_output=True, text=True).stdout.strip(), 120,
              "the cancelled training job to leave the queue")
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(train_jobs), "--format", "JobID,State"],
                              check=False, env=env, capture_output=True, text=True).stdout
        assert "|TIMEOUT" in acct, acct + out[-3000:]
        # every step logged once, in order, across the time limit: the retry went on from the step the first
        # attempt checkpointed at SIGTERM (that a resumed run's numbers equal an uninterrupted run's is
        # tests/test_preemption.py's claim, in one process, without Slurm's minute-long time limit)
        logged = [int(json.loads(ln)["step"]) for ln in log.read_text().splitlines()]
        assert logged == list(range(10, logged[-1] + 1, 10)) and logged[-1] >= resumed_at + 30, logged[-5:]
        state = torch.load(run_dir / "state.pt", weights_only=False)
        assert state["step"] >= resumed_at, (state["step"], resumed_at)

        # the retry continued the first attempt's MLflow run: one run, with loss logged before and after
        _assert_one_run_across(res, name, resumed_at)
    finally:
        if smk.poll() is None:
            smk.kill()
        shutil.rmtree(res, ignore_errors=True)



def test_two_node_training_resumes_after_slurms_warning_signal_and_matches_one_process(two_nodes, tmp_path):
    """resources.train_nodes: 2 on the `multi` partition (two slurmd on this host): the train job gets two
    nodes, srun starts one torchrun agent per node and they meet in a c10d rendezvous. Slurm's early warning
    (USR1 to every process of the job step, as `--signal=USR1@T` sends it) arrives mid-training: both trainers
    stop at the same step and write state.pt, the torchrun agents survive the signal and report the failure,
    and Snakemake's retry resumes where the first attempt stopped: the log has every step once, the retry
    continues the same MLflow run, and the final weights equal a single uninterrupted process's on the same
    global batch (up to the order of the gradient summation)."""
    steps = 300
    name, path, res, run_dir = _experiment(
        tmp_path, "slurm-2node-usr1",
        train={"steps": steps, "batch_size": 16, "warmup_steps": 2, "log_every": 10, "ckpt_every": 10 ** 9},
        resources={"train_nodes": 2})
    env = _env()
    log, text_log = run_dir / "train_log.partial.jsonl", run_dir / "train.log"
    smk = subprocess.Popen(_snakemake((run_dir / "model.pt").relative_to(tmp_path / "work"), path, "--set-resources",
                                      "train:slurm_partition=multi"),
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: log.exists() and len(log.read_text().splitlines()) >= 5, 300, "two-node training to log")
        job = subprocess.run(["squeue", "-h", "-o", "%i %P", "-t", "RUNNING"], check=False, env=env,
                             capture_output=True, text=True).stdout.split()
        train_job = job[job.index("multi") - 1]
        subprocess.run(["scancel", "--signal=USR1", train_job], check=True, env=env)
        out, _ = smk.communicate(timeout=600)
        assert smk.returncode == 0, out[-4000:]
        acct = subprocess.run(["sacct", "-n", "-P", "-j", train_job, "--format", "JobID,NNodes,State"],
                              check=False, env=env, capture_output=True, text=True).stdout
        # the allocation and the torchrun step both span the two nodes; the agents reported the stopped trainers
        assert f"{train_job}|2|" in acct and f"{train_job}.0|2|FAILED" in acct, acct
        text = text_log.read_text()
        assert "--nnodes=2" in text and "rdzv_backend=c10d" in text, text[-2000:]
        resumed_at = int(text.split("resumed from")[1].split("at step")[1].split()[0])
        assert 0 < resumed_at < steps, text[-2000:]
        logged = [json.loads(ln)["step"] for ln in (run_dir / "train_log.jsonl").read_text().splitlines()]
        assert logged == list(range(10, steps + 1, 10)), logged  # every step once: resumed where it stopped
        final = torch.load(run_dir / "model.pt", weights_only=False)
        assert final["step"] == steps
        _assert_one_run_across(res, name, resumed_at)

        from pra.config import from_dict
        from pra.train import train

        one_dir = tmp_path / "one"
        train(from_dict(final["config"]), scale="tiny-XS", method="pra", seed=0, data_dir=res / "data",
              out_dir=one_dir, progress=False)
        one = torch.load(one_dir / "model.pt", weights_only=False)["model"]
        worst = max((final["model"][k] - one[k]).abs().max().item() for k in one)
        assert worst < 1e-5, worst
    finally:
        if smk.poll() is None:
            smk.kill()
        shutil.rmtree(res, ignore_errors=True)
