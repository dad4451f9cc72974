"""The only module that talks to MLflow.

The store is explicit: an absolute SQLite URI inside the experiment's results folder unless
MLFLOW_TRACKING_URI is set (e.g. a shared `mlflow server` on a cluster). The database and the
experiment are created once by `init_store` before jobs fan out. Tracking never kills training: any
MLflow failure becomes a warning and the pipeline's own JSON files remain the record.
"""
from __future__ import annotations

import os
import json
import time
import warnings
from pathlib import Path

# Fail fast against an unreachable tracking server (MLflow's defaults retry for minutes); the user's
# own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _retry(fn, attempts: int = 10):
    """Retry SQLite 'database is locked' contention (many jobs writing one store); re-raise the rest."""
    for k in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - the message decides
            msg = str(e).lower()
            if k == attempts - 1 or not ("locked" in msg or "busy" in msg):
                raise
            time.sleep(min(2.0, 0.05 * 2 ** k))


def default_uri(results_dir: str | Path) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def init_store(uri: str, experiment: str) -> str:
    """Create the tracking database (schema) and the experiment; returns the experiment id."""
    import mlflow

    # An explicit client, never mlflow.set_tracking_uri: that also writes MLFLOW_TRACKING_URI into
    # os.environ, and every process started afterwards would then log to this store.
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return exp.experiment_id if exp else client.create_experiment(experiment)


class Run:
    """One MLflow run; resumable by id. Every call is failure-tolerant."""

    def __init__(self, uri: str | None, experiment: str, run_name: str, *, run_id: str | None = None,
                 params: dict | None = None, tags: dict | None = None, parent_run_id: str | None = None):
        self.run_id = None
        self._client = None
        if not uri:
            return
        try:
            import mlflow

            from mlflow.entities import Param

            client = mlflow.MlflowClient(uri)
            if run_id is None:
                exp = _retry(lambda: client.get_experiment_by_name(experiment))
                exp_id = exp.experiment_id if exp else _retry(lambda: client.create_experiment(experiment))
                all_tags = {"mlflow.runName": run_name, **(tags or {})}
                if parent_run_id:
                    all_tags["mlflow.parentRunId"] = parent_run_id
                run = _retry(lambda: client.create_run(exp_id, tags=all_tags, run_name=run_name))
                run_id = run.info.run_id
                ps = [Param(k, str(v)[:6000]) for k, v in _flatten(params or {}).items()]
                for i in range(0, len(ps), 100):
                    _retry(lambda: client.log_batch(run_id, params=ps[i:i + 100]))
            else:
                _retry(lambda: client.update_run(run_id, status="RUNNING"))
            self._client, self.run_id = client, run_id
        except Exception as e:  # pragma: no cover - depends on the store
            warnings.warn(f"MLflow tracking disabled ({type(e).__name__}: {e}); metrics stay in the JSON files")

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if self._client is None:
            return
        try:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
            _retry(lambda: self._client.log_batch(self.run_id, metrics=batch))
        except Exception as e:  # pragma: no cover
            warnings.warn(f"MLflow log failed ({type(e).__name__}: {e}); the JSON files keep the metrics")
            self._client = None  # do not slow every later step down

    def set_tags(self, tags: dict) -> None:
        if self._client is None:
            return
        try:
            for k, v in tags.items():
                _retry(lambda: self._client.set_tag(self.run_id, k, str(v)))
        except Exception as e:  # pragma: no cover
            warnings.warn(f"MLflow tag failed ({type(e).__name__}: {e})")

    def log_artifact(self, path: str | Path) -> None:
        if self._client is None:
            return
        try:
            self._client.log_artifact(self.run_id, str(path))
        except Exception as e:  # pragma: no cover
            warnings.warn(f"MLflow artifact failed ({type(e).__name__}: {e})")

    def end(self, status: str = "FINISHED") -> None:
        if self._client is None:
            return
        try:
            _retry(lambda: self._client.set_terminated(self.run_id, status=status))
        except Exception as e:  # pragma: no cover
            warnings.warn(f"MLflow end failed ({type(e).__name__}: {e})")


def delete_runs(uri: str, experiment: str, tag: str, value: str) -> None:
    """Delete the runs of `experiment` whose tag `tag` equals `value` (an ablation's earlier parent and
    children before it is logged again); a failure is a warning."""
    try:
        import mlflow

        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            for r in client.search_runs([exp.experiment_id], filter_string=f"tags.`{tag}` = '{value}'"):
                client.delete_run(r.info.run_id)
    except Exception as e:  # noqa: BLE001 - tracking never breaks the pipeline
        warnings.warn(f"MLflow cleanup failed ({e})")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out



def uri_of(tracking_json: str | Path | None) -> str | None:
    """The tracking URI recorded by init-tracking in tracking.json (None: no tracking)."""
    if not tracking_json:
        return None
    return json.loads(Path(tracking_json).read_text())["tracking_uri"]


# ---- the command-line job ----------------------------------------------------------------------
def init_job(args):
    from pra.io import write_json

    uri = args.uri or default_uri(args.results)
    exp_id = init_store(uri, args.experiment)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"tracking_uri": uri, "experiment": args.experiment, "experiment_id": exp_id})
