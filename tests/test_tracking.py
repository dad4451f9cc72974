"""MLflow tracking: concurrent writers lose nothing; an unreachable server does not stop training."""
import multiprocessing as mp
import os
import time

import pytest

from conftest import tiny_config
from pra import tracking


def _writer(uri, i, n_metrics):
    run = tracking.Run(uri, "concurrency", f"writer-{i}", params={"i": i})
    for step in range(n_metrics):
        run.log_metrics({"loss": float(i * 1000 + step)}, step)
    run.end("FINISHED")


@pytest.mark.slow  # sixteen processes
def test_sixteen_concurrent_writers_lose_nothing(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.init_store(uri, "concurrency")  # once, before the fan-out (as the init_tracking rule does)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(uri, i, 20)) for i in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 16 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        hist = client.get_metric_history(r.info.run_id, "loss")
        i = int(r.data.params["i"])
        assert sorted(m.value for m in hist) == [float(i * 1000 + s) for s in range(20)]


def test_init_store_leaves_the_environment_alone(tmp_path):
    """Creating a store must not redirect later processes: they inherit os.environ."""
    tracking.init_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "env")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert (tmp_path / "mlflow.db").exists()


def test_unreachable_server_does_not_stop_training(tmp_path, prepared):
    from pra.train import train

    t0 = time.time()
    with pytest.warns(UserWarning, match="MLflow"):
        s = train(tiny_config(train={"steps": 10}), scale="tiny-XS", method="pra", seed=0, data_dir=prepared,
                  out_dir=tmp_path, tracking_uri="http://127.0.0.1:9", progress=False)
    assert s["steps"] == 10 and (tmp_path / "model.pt").exists()
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 2  # metrics stay in the JSON
    assert time.time() - t0 < 120
