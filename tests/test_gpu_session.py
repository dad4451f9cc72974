"""benchmarks/gpu_session.sh's smoke part with `python` and `snakemake` replaced by stubs that record their
command lines: on the device, the whole smoke pipeline with device cuda under the part's own budget; in the dry
run, the pipeline's plan with device cuda and one real training job on the CPU (the real dry run, `GPU_DRY=1
benchmarks/gpu_session.sh smoke`, takes ~25 s on 2 cores and is not run here)."""
import os
import re
import subprocess

import pytest

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
PLAN = """Job stats:
job      count
-------  -------
train          13
total         100
rule train:
    output: results/smoke/runs/tiny-XS/pixel_tf/base/s1/model.pt, results/smoke/runs/tiny-XS/pixel_tf/base/s1/train.json
rule train:
    output: results/smoke/runs/tiny-XS/pra/base/s1/model.pt, results/smoke/runs/tiny-XS/pra/base/s1/train.json
"""


@pytest.fixture
def stubs(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls"
    (tmp_path / "plan.txt").write_text(PLAN)
    for name, body in (("python", 'echo "torch stub"'),
                       ("snakemake", f'echo "$*" >> {calls}\ncase " $* " in *" -n "*) cat {tmp_path / "plan.txt"};; '
                                     '*) echo "4 of 4 steps (100%) done";; esac')):
        (bin_ / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_ / name).chmod(0o755)

    def run(part, **env):
        e = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"), **env}
        p = subprocess.run(["bash", str(SCRIPT), part], cwd=ROOT, env=e, capture_output=True, text=True, timeout=60)
        lines = calls.read_text().splitlines() if calls.exists() else []
        calls.unlink(missing_ok=True)
        return p, lines

    return run


def test_usage_names_the_three_parts_and_an_unknown_part_fails(stubs):
    p = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "train|sample|smoke" in p.stderr
    p, calls = stubs("nope")
    assert p.returncode == 2 and "train|sample|smoke" in p.stdout and not calls


def test_the_smoke_part_runs_the_whole_pipeline_with_device_cuda_under_its_own_budget(stubs):
    p, calls = stubs("smoke")
    assert p.returncode == 0, p.stderr
    assert len(calls) == 1 and " -n " not in f" {calls[0]} "
    args = calls[0].split()
    assert "all" in args and "device=cuda" in args and "--keep-going" in args
    assert args[args.index("--configfile") + 1] == "experiments/smoke.yaml"
    assert args[args.index("--cores") + 1] == "8"
    assert "smoke pipeline (device cuda" in p.stdout
    assert int(re.search(r"start \((\d+) s left\)", p.stdout).group(1)) >= 535  # the part's whole budget, 540 s
    # under 300 s of budget it is skipped, not started
    p, calls = stubs("smoke", PART_SECONDS="200")
    assert not calls and "skipped" in p.stdout


def test_the_dry_smoke_part_plans_with_device_cuda_and_runs_one_training_job_on_the_cpu(stubs):
    p, calls = stubs("smoke", GPU_DRY="1")
    assert p.returncode == 0, p.stderr
    assert len(calls) == 2
    plan, job = (c.split() for c in calls)
    assert "-n" in plan and "all" in plan and "device=cuda" in plan
    assert "-n" not in job and "device=cpu" in job and "all" not in job
    assert job[-1] == "results/smoke/runs/tiny-XS/pra/base/s1/model.pt"
    assert "100 jobs planned" in p.stdout and "4 of 4 steps (100%) done" in p.stdout
