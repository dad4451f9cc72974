"""The MLflow view of an ablation: a real `mlflow server` on loopback, checked through its REST API,
and (where Chromium is installed) the compare page rendered headless to a screenshot."""
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from pra import tracking
from pra.ablation import log_to_mlflow

pytestmark = pytest.mark.slow  # an MLflow server and a browser

SUMMARY = {"name": "settle", "scale": "tiny-S", "seeds": [0], "train_steps": 1000,
           "variants": [{"name": n, "method": n, "variant": "base", "overrides": {}, "mlflow_run_ids": [None],
                         "metrics": {"fid": {"mean": f, "std": None, "n": 1, "values": [f]},
                                     "precision": {"mean": p, "std": None, "n": 1, "values": [p]}}}
                        for n, f, p in (("latent_tf", 12.0, 0.6), ("pra", 7.0, 0.8), ("free_rollout", 6.5, 0.8))]}


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base, path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    tracking.init_store(uri, "pytest-ui")
    parent = log_to_mlflow(SUMMARY, uri, "pytest-ui")
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
                             "--default-artifact-root", str(d / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(base + "/health", timeout=2)
            break
        except Exception:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not become healthy")
    yield base, parent, d
    proc.terminate()
    proc.wait(timeout=30)


def test_parent_and_children_through_the_rest_api(server):
    base, parent, _ = server
    exp = _api(base, "/api/2.0/mlflow/experiments/get-by-name?" + urllib.parse.urlencode({"experiment_name": "pytest-ui"}))
    exp_id = exp["experiment"]["experiment_id"]
    runs = _api(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 100})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    children = [r for r in runs if tags[r["info"]["run_id"]].get("mlflow.parentRunId") == parent]
    assert parent in tags and tags[parent]["pra.role"] == "ablation"
    got = {}
    for c in children:
        params = {p["key"]: p["value"] for p in c["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in c["data"]["metrics"]}
        got[params["variant"]] = metrics
    assert got == {v["name"]: {"fid": v["metrics"]["fid"]["mean"], "precision": v["metrics"]["precision"]["mean"]}
                   for v in SUMMARY["variants"]}


def test_compare_page_screenshot(server):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    base, parent, d = server
    exp_id = _api(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=pytest-ui")["experiment"]["experiment_id"]
    runs = _api(base, "/api/2.0/mlflow/runs/search",
                {"experiment_ids": [exp_id], "filter": f"tags.mlflow.parentRunId = '{parent}'"})["runs"]
    ids = json.dumps([r["info"]["run_id"] for r in runs])
    url = f"{base}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments={urllib.parse.quote(json.dumps([exp_id]))}"
    shot = d / "compare.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={d / 'chrome'}", "--window-size=1400,1000", "--virtual-time-budget=20000",
                    f"--screenshot={shot}", url], capture_output=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000
