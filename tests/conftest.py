import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _default_tracking_store(monkeypatch):
    """Every pipeline run in the tests uses its own results folder's MLflow store, whatever the calling
    shell's (or an earlier test's) MLFLOW_TRACKING_URI points at; subprocesses inherit this environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory):
    from pra.data.embedded import export_digits

    root = tmp_path_factory.mktemp("raw") / "digits"
    export_digits(root, 0.2, 0)
    return root


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, digits_root):
    """The default data prepared at 16x16 (fast) for model tests."""
    from pra.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared16")
    prepare(digits_root, out, resolution=16, channels=1, shard_size=500, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def prepared32(tmp_path_factory, digits_root):
    from pra.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared32")
    prepare(digits_root, out, resolution=32, channels=1, shard_size=500, workers=2, progress=False)
    return out


def tiny_config(**over):
    """A seconds-scale config: 16x16 digits, 4x4 patches (16 tokens of 16-d), tiny-XS."""
    from pra.config import ExperimentConfig

    base = dict(scales=["tiny-XS"], data={"resolution": 16}, model={"patch_size": 4, "z_dim": 2,
                                                                    "prefix_tokens": 4},
                train={"steps": 20, "batch_size": 16, "warmup_steps": 2, "log_every": 5, "ckpt_every": 10},
                sample={"per_class": 2, "batch_size": 10, "ode_steps": 3},
                method={"rollout_ode_steps": 2})
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return ExperimentConfig().replace(**base)


def snakemake(workdir, *args):
    """A snakemake command line for this checkout's workflow with its working directory (results/, data/,
    .snakemake/) in `workdir`, a temporary folder: tests never write into the repository."""
    return ["snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *map(str, args)]


def run(cmd, cwd=ROOT, env=None, timeout=900, check=True):
    e = {**os.environ, **(env or {})}
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="session")
def trained_pra(tmp_path_factory, prepared):
    """A tiny PRA model trained for 20 steps on 16x16 digits."""
    from pra.train import train

    out = tmp_path_factory.mktemp("trained_pra")
    train(tiny_config(), scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=out, progress=False)
    return out / "model.pt"


def pytest_collection_modifyitems(config, items):
    """The tests marked slow (real pipeline, DVC and Slurm runs: minutes each) are collected first. `make test`
    spreads the suite over pytest-xdist workers, which take the next test when they finish one: long tests
    started first keep any of them from running alone at the end. The order changes nothing else (no test
    depends on another's results)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
