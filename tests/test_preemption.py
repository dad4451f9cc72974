"""SIGTERM/SIGUSR1 during training: a checkpoint, a non-zero exit, and a rerun that ends bitwise-equal."""
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, tiny_config


def _cmd(cfg, data, out):
    return [sys.executable, "-m", "pra", "train", "--config-json", cfg.to_json(), "--scale", "tiny-XS",
            "--method", "pra", "--seed", "3", "--data", str(data), "--out", str(out), "--quiet"]


CFG = dict(train={"steps": 400, "log_every": 7, "ckpt_every": 1000})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, prepared):
    """The run without a signal (one for both signals)."""
    ref = tmp_path_factory.mktemp("ref")
    subprocess.run(_cmd(tiny_config(**CFG), prepared, ref), cwd=ROOT, check=True, capture_output=True)
    return ref


@pytest.mark.slow  # training processes signalled and restarted
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_and_rerun_resumes(tmp_path, prepared, uninterrupted, sig):
    cfg, ref = tiny_config(**CFG), uninterrupted

    out = tmp_path / "run"
    p = subprocess.Popen(_cmd(cfg, prepared, out), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    log = out / "train_log.partial.jsonl"  # the log of a run in progress
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "stopped early" in err and (out / "state.pt").exists() and not (out / "model.pt").exists()
    stopped_at = torch.load(out / "state.pt", weights_only=False)["step"]
    assert 0 < stopped_at < 400

    subprocess.run(_cmd(cfg, prepared, out), cwd=ROOT, check=True, capture_output=True)
    a = torch.load(ref / "model.pt", weights_only=False)["model"]
    b = torch.load(out / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (ref / "train_log.jsonl").read_text() == (out / "train_log.jsonl").read_text()
