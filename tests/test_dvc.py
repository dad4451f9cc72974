"""DVC on a real repository: data.dvc as a reproducibility check, push/pull, and `dvc repro`."""
import json
import shutil

import pytest
import yaml

from conftest import ROOT, run

pytestmark = pytest.mark.slow  # real Snakemake/DVC/Slurm/browser/multi-process runs: `make test-fast` skips them


def _clone(tmp_path, name, remote):
    repo = tmp_path / name
    run(["git", "clone", "-q", str(ROOT), str(repo)])
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], cwd=repo)
    return repo


def _smoke_as_default(repo):
    """The smoke experiment written as the clone's config/config.yaml (what the DVC stage tracks)."""
    base = yaml.safe_load((repo / "config/config.yaml").read_text())
    smoke = yaml.safe_load((repo / "experiments/smoke.yaml").read_text())
    for k, v in smoke.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) else v
    base["name"], base["reports_dir"] = "default", "reports"
    (repo / "config/config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))


def test_dvc_reproduces_the_pipeline(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the project's git repository")
    remote = tmp_path / "remote"
    # 1. a fresh clone regenerates the raw exports (digits, MNIST); their hash equals the one in data.dvc
    seed = _clone(tmp_path, "seed", remote)
    run(["snakemake", "--cores", "1", "export_embedded"], cwd=seed)
    run(["snakemake", "--cores", "1", "export_embedded", "--configfile", "experiments/settle.yaml"], cwd=seed)
    st = run(["dvc", "status", "data.dvc"], cwd=seed).stdout
    assert "not in cache" in st and "modified" not in st, st
    run(["dvc", "commit", "-f", "data.dvc"], cwd=seed)
    assert "up to date" in run(["dvc", "status", "data.dvc"], cwd=seed).stdout
    run(["dvc", "push", "data.dvc"], cwd=seed)

    # 2. another fresh clone: `dvc repro --pull` fetches the data and runs the pipeline
    repo = _clone(tmp_path, "repo", remote)
    _smoke_as_default(repo)
    run(["dvc", "repro", "--pull"], cwd=repo, timeout=1200)
    status = run(["dvc", "status"], cwd=repo).stdout
    assert "up to date" in status, status
    metrics = run(["dvc", "metrics", "show", "--json"], cwd=repo).stdout
    assert "tiny-XS/pra/base/s0" in metrics
    plots = json.loads(run(["dvc", "plots", "show", "--json"], cwd=repo).stdout)
    assert any("tiny-XS_pra_base_s0.csv" in k for k in plots.get("data", plots))

    # 3. a changed parameter marks the stage changed
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg["sample"]["cfg_scale"] = 2.0
    (repo / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    status = run(["dvc", "status"], cwd=repo).stdout
    assert "pipeline" in status and "modified" in status and "sample" in status, status

    # 4. push/pull round trip of data.dvc
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run(["dvc", "pull", "data.dvc"], cwd=repo)
    assert len(list((repo / "data/digits").rglob("*.png"))) == 1797
    assert len(list((repo / "data/mnist").rglob("*.png"))) == 5000
    assert "up to date" in run(["dvc", "status", "data.dvc"], cwd=repo).stdout
