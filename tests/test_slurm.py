"""`snakemake --profile slurm all` on a real single-node Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd)."""
import json
import os
import shutil
import subprocess
import uuid

import pytest
import yaml

from conftest import ROOT

START = ROOT / "tests" / "slurm" / "start_cluster.sh"


@pytest.fixture(scope="module")
def slurm():
    p = subprocess.run([str(START)], capture_output=True, text=True, timeout=300)
    if p.returncode == 3:
        pytest.skip(f"single-node Slurm cannot run here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stdout + p.stderr
    return True


def test_profile_runs_the_pipeline_on_slurm(slurm, tmp_path):
    name = f"slurm-{uuid.uuid4().hex[:6]}"
    cfg = {"name": name, "reports_dir": f"results/{name}/reports", "scales": ["tiny-XS"], "methods": ["pra"],
           "data": {"root": f"results/{name}/raw/digits", "resolution": 16},
           "model": {"patch_size": 4, "z_dim": 2, "prefix_tokens": 4},
           "train": {"steps": 10, "batch_size": 8, "warmup_steps": 2, "log_every": 5, "ckpt_every": 5},
           "sample": {"per_class": 2, "batch_size": 20, "ode_steps": 2, "shards": 2},
           "evaluate": {"classifier_epochs": 1, "probe_epochs": 2, "probe_warmup_epochs": 1},
           "ablations": []}
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"/usr/sbin:{os.environ['PATH']}"}
    try:
        p = subprocess.run(["snakemake", "--profile", "slurm", "all", "--configfile", str(path),
                            "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks",
                            "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
        res = ROOT / "results" / name
        assert (res / "reports/tables/runs.md").exists() and (res / "reports/metrics.json").exists()
        metrics = json.loads((res / "reports/metrics.json").read_text())
        assert metrics["tiny-XS/pra/base/s0"]["fid"] > 0
        # the jobs really went through Slurm and its accounting
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-1hour", "--format", "JobName,State"],
                              env=env, capture_output=True, text=True).stdout
        done = [ln for ln in acct.splitlines() if ln.endswith("COMPLETED")]
        assert len(done) >= 7, acct  # prepare, classifier, reference, train, 2 sample shards, evaluate, probe
    finally:
        shutil.rmtree(ROOT / "results" / name, ignore_errors=True)
