"""Data parallelism: 2 gloo processes on CPU reproduce one process on the same global batch."""
import pytest
import os
import socket

import torch
import torch.multiprocessing as mp

from conftest import tiny_config

pytestmark = pytest.mark.slow  # several training/sampling processes


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, cfg_dict, data, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from pra.config import from_dict
    from pra.train import train

    train(from_dict(cfg_dict), scale="tiny-XS", method="pra", seed=0, data_dir=data, out_dir=out, progress=False)


def test_two_gloo_processes_match_one(tmp_path, prepared):
    cfg = tiny_config(train={"steps": 6, "batch_size": 16, "ckpt_every": 100, "log_every": 2})
    from pra.train import train

    train(cfg, scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=tmp_path / "one", progress=False)
    mp.start_processes(_worker, args=(2, _free_port(), cfg.to_dict(), str(prepared), str(tmp_path / "two")),
                       nprocs=2, start_method="spawn", join=True)
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=False)["model"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    # float32, 6 AdamW steps: only the order of the gradient summation differs (tolerance 1e-5)
    assert worst < 1e-5, worst
    # the comparison is not vacuous: half the global batch gives clearly different weights
    train(cfg.replace(train={"batch_size": 8}), scale="tiny-XS", method="pra", seed=0, data_dir=prepared,
          out_dir=tmp_path / "half", progress=False)
    c = torch.load(tmp_path / "half" / "model.pt", weights_only=False)["model"]
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 100 * max(worst, 1e-8)


def _sample_worker(rank, world, port, model, out, sample_cfg):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from pra.config import SampleConfig
    from pra.sample import sample_to_npz

    sample_to_npz(model, out, SampleConfig(**sample_cfg))


def test_two_sampling_processes_write_the_same_shard(tmp_path, trained_pra):
    import numpy as np

    from pra.config import SampleConfig
    from pra.sample import gather, sample_to_npz

    s = {**SampleConfig().__dict__, "per_class": 2, "batch_size": 3, "ode_steps": 2}
    sample_to_npz(trained_pra, tmp_path / "one.npz", SampleConfig(**s))
    mp.start_processes(_sample_worker, args=(2, _free_port(), str(trained_pra), str(tmp_path / "two.npz"), s),
                       nprocs=2, start_method="spawn", join=True)
    gather([tmp_path / "one.npz"], tmp_path / "g1.npz")
    gather([tmp_path / "two.npz"], tmp_path / "g2.npz")
    a, b = np.load(tmp_path / "g1.npz"), np.load(tmp_path / "g2.npz")
    assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["labels"], b["labels"])
