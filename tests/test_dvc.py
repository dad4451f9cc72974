"""DVC on a real repository: data.dvc as a reproducibility check, push/pull, and `dvc repro`."""
import json
import re
import shutil
import sys

import pytest
import yaml

from conftest import ROOT, run



def _clone(tmp_path, name, remote):
    repo = tmp_path / name
    run(["git", "clone", "-q", str(ROOT), str(repo)])
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], cwd=repo)
    return repo


def _smoke_as_default(repo):
    """The smoke experiment written as the clone's config/config.yaml (what the DVC stage tracks), cut to its
    one pra run without ablation, probe or snapshots: what DVC is tested on is the stage, not every rule
    (make smoke and tests/test_workflow.py run those)."""
    base = yaml.safe_load((repo / "config/config.yaml").read_text())
    smoke = yaml.safe_load((repo / "experiments/smoke.yaml").read_text())
    for k, v in smoke.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) else v
    base["ablations"] = []
    base["evaluate"].update(probe=False, snapshot_every=0)
    base["name"], base["reports_dir"] = "default", "reports"
    (repo / "config/config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))


def test_the_committed_lock_matches_the_code(tmp_path):
    """dvc.lock records the code of the committed results: in a fresh clone, with the package imported (its
    __pycache__ written), `dvc status` finds the code and the workflow unchanged (only the results, which a
    clone lacks, and the raw data, are missing)."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs the project's git repository")
    repo = tmp_path / "clone"
    run(["git", "clone", "-q", str(ROOT), str(repo)])
    run([sys.executable, "-c", "import pra.train, pra.report.build, pra.sample"], cwd=repo,
        env={"PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": ""})
    assert list((repo / "pra").rglob("__pycache__"))
    status = json.loads(run(["dvc", "status", "--json"], cwd=repo).stdout)
    changed = [d for entry in status.get("pipeline", []) for d, why in entry.get("changed deps", {}).items()
               if (d, why) != ("data", "deleted")]  # the raw data is exported by the pipeline (or pulled)
    assert not changed, status


@pytest.mark.slow  # real DVC runs of the pipeline
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

    # 3. results follow code (pra.codehash): a result-changing edit reruns exactly the jobs that run the edited
    # module (here the metrics: evaluate and reference, then the report), never training; an
    # analysis-only edit reruns the report alone; `dvc repro` then records the new code beside new results
    def mtimes(pattern):
        return {p: p.stat().st_mtime_ns for p in (repo / "results/default").glob(pattern)}

    fid = json.loads((repo / "reports/metrics.json").read_text())
    trained, evaluated = mtimes("runs/*/*/*/*/model.pt"), mtimes("runs/*/*/*/*/eval.json")
    metrics_py = repo / "pra/evaluate/metrics.py"
    text = metrics_py.read_text()
    edited = text.replace('out = {"fid": frechet_distance(statistics(sample_feats[L["fid"]]), reference["stats"]),',
                          'out = {"fid": 100 + frechet_distance(statistics(sample_feats[L["fid"]]), reference["stats"]),')
    assert edited != text
    metrics_py.write_text(edited)
    assert "pra" in run(["dvc", "status"], cwd=repo).stdout
    run(["dvc", "repro"], cwd=repo, timeout=1200)
    assert "up to date" in run(["dvc", "status"], cwd=repo).stdout
    new = json.loads((repo / "reports/metrics.json").read_text())
    key = "tiny-XS/pra/base/s0"
    assert abs(new[key]["fid"] - fid[key]["fid"] - 100) < 1e-6, (fid[key], new[key])
    assert mtimes("runs/*/*/*/*/model.pt") == trained  # no retraining
    assert all(mtimes("runs/*/*/*/*/eval.json")[p] > t for p, t in evaluated.items())
    tables_py = repo / "pra/report/tables.py"
    tables_py.write_text(tables_py.read_text().replace("MISSING = ", "UNUSED = 0\nMISSING = ", 1))
    plan = run(["snakemake", "-n", "all", "--quiet", "rules"], cwd=repo).stdout  # only the report is planned
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan, flags=re.M))
    assert {k: v for k, v in jobs.items() if k not in ("all", "total")} == {"build_report": "1"}, plan

    # 4. a changed parameter marks the stage changed
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg["sample"]["cfg_scale"] = 2.0
    (repo / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    status = run(["dvc", "status"], cwd=repo).stdout
    assert "pipeline" in status and "modified" in status and "sample" in status, status

    # 5. push/pull round trip of data.dvc
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run(["dvc", "pull", "data.dvc"], cwd=repo)
    assert len(list((repo / "data/digits").rglob("*.png"))) == 1797
    assert len(list((repo / "data/mnist").rglob("*.png"))) == 5000
    assert "up to date" in run(["dvc", "status", "data.dvc"], cwd=repo).stdout
