"""The Snakemake workflow itself: lint, dry run, and a real tiny run end to end."""
import json
import shutil
import uuid

import pytest
import yaml

from conftest import ROOT, run


def test_lint_is_clean():
    p = run(["snakemake", "--lint"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_dry_run_of_default_plans_the_whole_pipeline():
    name = f"dryrun-{uuid.uuid4().hex[:8]}"
    p = run(["snakemake", "-n", "all", "--quiet", "rules", "--config", f"name={name}",
             f"reports_dir=results/{name}/reports"])
    assert not (ROOT / "results" / name).exists()
    out = p.stdout + p.stderr
    for rule in ("prepare", "train", "sample", "evaluate", "build_report", "train_classifier"):
        assert rule in out, out


@pytest.fixture()
def tiny_experiment(tmp_path):
    name = f"pytest-{uuid.uuid4().hex[:8]}"
    cfg = {
        "name": name, "reports_dir": f"results/{name}/reports", "scales": ["tiny-XS"],
        "methods": ["latent_tf", "pra"],
        "data": {"root": f"results/{name}/raw/digits", "resolution": 16},
        "model": {"patch_size": 4, "z_dim": 2, "prefix_tokens": 4},
        "train": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "log_every": 4, "ckpt_every": 8},
        "sample": {"per_class": 3, "batch_size": 30, "ode_steps": 2},
        "evaluate": {"classifier_epochs": 1},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    yield name, path
    shutil.rmtree(ROOT / "results" / name, ignore_errors=True)


def test_real_run_end_to_end(tiny_experiment):
    name, path = tiny_experiment
    run(["snakemake", "--cores", "2", "all", "--configfile", str(path)])
    res = ROOT / "results" / name
    table = (res / "reports/tables/fid.md").read_text()
    assert "| tiny-XS | pra | 0 |" in table and "| tiny-XS | latent_tf | 0 |" in table
    metrics = json.loads((res / "reports/metrics.json").read_text())
    assert metrics["tiny-XS/pra/s0"]["fid"] > 0
    assert (res / "reports/figures/samples.png").stat().st_size > 1000
    assert (res / "mlflow.db").exists()
    # every training run reached MLflow with its metrics
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{res / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == ["latent_tf", "pra"]
    assert all("loss" in r.data.metrics and "fid" in r.data.metrics for r in runs)
    assert all(r.info.status == "FINISHED" for r in runs)
    # nothing left to do afterwards
    p = run(["snakemake", "-n", "all", "--configfile", str(path)])
    assert "Nothing to be done" in p.stdout + p.stderr
