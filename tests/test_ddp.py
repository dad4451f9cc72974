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


def _flag_worker(rank, world, port, flags, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import json

    import torch.distributed as dist

    from pra.distributed import first_across_ranks

    dist.init_process_group("gloo")
    seen = [first_across_ranks(torch.tensor(f[rank])) for f in flags]
    # the deferred check of the training step: a non-finite step on one rank stops every rank
    from pra.checkpoint import build_network
    from pra.model.network import Geometry
    from pra.step import TrainStep

    cfg = tiny_config(speed={"deferred_checks": "on"})
    ts = TrainStep(cfg, build_network(cfg, "tiny-XS", "pra", Geometry(16, 1, 4, 10)), "pra", torch.device("cpu"))
    ts._nonfinite = torch.tensor(4 if rank == 1 else -1)
    try:
        ts.check(6)
        raised = ""
    except FloatingPointError as e:
        raised = str(e)
    with open(f"{out}/{rank}.json", "w") as fh:
        json.dump({"seen": seen, "raised": raised}, fh)
    dist.destroy_process_group()


def test_a_flagged_step_on_one_rank_is_seen_by_every_rank(tmp_path):
    import json

    flags = [(-1, 5), (-1, -1), (7, 3), (0, -1)]
    mp.start_processes(_flag_worker, args=(2, _free_port(), flags, str(tmp_path)), nprocs=2, start_method="spawn",
                       join=True)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"{rank}.json").read_text())
        assert r["seen"] == [5, -1, 3, 0]
        assert "non-finite loss at step 4" in r["raised"]
