import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from pra.io import load_npz
from pra.sample import sample_to_npz
from pra.checkpoint import load_trained
from pra.config import ConfigError
from pra.train import Stop, train


def _losses(out):
    return [json.loads(ln)["loss"] for ln in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["latent_tf", "pra"])
def test_training_lowers_the_loss(tmp_path, prepared, method):
    cfg = tiny_config(train={"steps": 120, "log_every": 20, "ckpt_every": 1000, "lr": 3e-3,
                             "warmup_steps": 10})
    summary = train(cfg, scale="tiny-XS", method=method, seed=0, data_dir=prepared, out_dir=tmp_path,
                    progress=False)
    losses = _losses(tmp_path)
    assert summary["steps"] == 120 and len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "state.pt").exists()


def test_random_flip_mirrors_about_half_of_each_batch_and_draws_nothing_when_off(prepared):
    """train.random_flip: every image of a batch is the prepared image or its left-right mirror, about half are
    mirrored, each rank gets its slice of one global draw; off, the batches are exactly the unflipped ones (no
    draw, so runs without it are unchanged)."""
    from pra.data.dataset import PreparedSplit
    from pra.distributed import DistInfo
    from pra.model.patches import patchify, to_unit
    from pra.train import Batches

    data = PreparedSplit(prepared, "train")
    on, off = tiny_config(train={"batch_size": 64, "random_flip": True}), tiny_config(train={"batch_size": 64})
    a, b = Batches(data, on, 3, DistInfo(), torch.device("cpu")), Batches(data, off, 3, DistInfo(), torch.device("cpu"))
    assert not off.train.random_flip
    def indices(batches):  # the indices the next batch will take, from a copy of its generator
        gen = torch.Generator()
        gen.set_state(batches.gen.get_state())
        return torch.randint(len(data), (64,), generator=gen).numpy()

    assert np.array_equal(indices(a), indices(b))  # the flips are drawn after the indices
    from pra.runtime import generator

    own = generator(3 * 1000 + 1)  # what Batches draws from, followed independently: off, nothing else is drawn
    expected_off = [torch.randint(len(data), (64,), generator=own).numpy() for _ in range(4)]
    mirrored = []
    for k in range(4):
        assert np.array_equal(indices(b), expected_off[k])
        plain_off, plain = data.take(indices(b)), data.take(indices(a))
        x_off, _ = b.next()
        assert torch.equal(x_off, patchify(to_unit(torch.from_numpy(plain_off)), off.model.patch_size))
        idx = indices(a)
        x_on, y_on = a.next()
        as_is = patchify(to_unit(torch.from_numpy(plain)), on.model.patch_size)
        mirror = patchify(to_unit(torch.from_numpy(plain[:, :, ::-1].copy())), on.model.patch_size)
        same = [torch.equal(x_on[i], as_is[i]) for i in range(64)]
        flipped = [torch.equal(x_on[i], mirror[i]) for i in range(64)]
        assert all(s or m for s, m in zip(same, flipped))
        mirrored += [m for s, m in zip(same, flipped) if s != m]  # images that differ from their mirror
        assert torch.equal(y_on, torch.from_numpy(data.labels[idx]))
    assert 0.3 < np.mean(mirrored) < 0.7, np.mean(mirrored)
    # two ranks: each gets its half of the one global batch, flips included
    full = Batches(data, on, 5, DistInfo(), torch.device("cpu")).next()[0]
    halves = [Batches(data, on, 5, DistInfo(rank=r, world=2), torch.device("cpu")).next()[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), full)


@pytest.mark.parametrize("flip", [False, True])
def test_resume_equals_uninterrupted_bitwise(tmp_path, prepared, flip):
    cfg = tiny_config(method={"p_token": 0.5}, train={"random_flip": flip})
    full = tmp_path / "full"
    train(cfg, scale="tiny-XS", method="pra", seed=1, data_dir=prepared, out_dir=full, progress=False)
    part = tmp_path / "part"
    with pytest.raises(Stop):
        train(cfg, scale="tiny-XS", method="pra", seed=1, data_dir=prepared, out_dir=part, stop_after=10,
              progress=False)
    assert (part / "state.pt").exists() and not (part / "model.pt").exists()
    train(cfg, scale="tiny-XS", method="pra", seed=1, data_dir=prepared, out_dir=part, progress=False)
    a = torch.load(full / "model.pt", weights_only=False)["model"]
    b = torch.load(part / "model.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _losses(full) == _losses(part)


def test_snapshots_survive_a_resume_and_equal_an_uninterrupted_runs(tmp_path, prepared):
    cfg = tiny_config(evaluate={"snapshot_every": 5})
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, scale="tiny-XS", method="pra", seed=1, data_dir=prepared, out_dir=full, progress=False)
    with pytest.raises(Stop):
        train(cfg, scale="tiny-XS", method="pra", seed=1, data_dir=prepared, out_dir=part, stop_after=12,
              progress=False)
    assert sorted(p.name for p in (part / "snapshots.partial").iterdir()) == ["step-0000005.pt", "step-0000010.pt"]
    train(cfg, scale="tiny-XS", method="pra", seed=1, data_dir=prepared, out_dir=part, progress=False)
    names = sorted(p.name for p in (full / "snapshots").iterdir())
    assert names == ["step-0000005.pt", "step-0000010.pt", "step-0000015.pt"]  # step 20 is model.pt
    assert sorted(p.name for p in (part / "snapshots").iterdir()) == names and not (part / "snapshots.partial").exists()
    for n in names:
        a = torch.load(full / "snapshots" / n, weights_only=False)["model"]
        b = torch.load(part / "snapshots" / n, weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), n


@pytest.mark.parametrize("change, key", [({"train": {"lr": 5e-4}}, "config.train.lr"),
                                         ({"model": {"z_dim": 3}}, "config.model.z_dim"),
                                         ({"method": {"t_min": 0.25}}, "config.method.t_min")])
def test_resume_after_a_config_change_stops_naming_the_key(tmp_path, prepared, change, key):
    """A changed learning rate would be silently ignored by a resume, a changed z_dim crash with a shape error:
    both stop before any step, naming the key, and leave state.pt as it was."""
    cfg = tiny_config()
    with pytest.raises(Stop):
        train(cfg, scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=tmp_path, stop_after=10,
              progress=False)
    before = (tmp_path / "state.pt").read_bytes()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        train(tiny_config(**change), scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=tmp_path,
              progress=False)
    assert "delete" in str(e.value) and (tmp_path / "state.pt").read_bytes() == before
    # the speed section is an execution setting: resuming with another one is allowed
    train(cfg.replace(speed={"sample_precision": "bf16"}), scale="tiny-XS", method="pra", seed=0, data_dir=prepared,
          out_dir=tmp_path, progress=False)
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "state.pt").exists()


def test_resume_after_a_code_change_stops(tmp_path, prepared):
    """A state written by other training code (another pra.codehash) is not continued by this code."""
    cfg = tiny_config()
    with pytest.raises(Stop):
        train(cfg, scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=tmp_path, stop_after=10,
              progress=False, code_hash="aaaa")
    with pytest.raises(ConfigError, match="code_hash"):
        train(cfg, scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=tmp_path, progress=False,
              code_hash="bbbb")
    train(cfg, scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=tmp_path, progress=False,
          code_hash="aaaa")
    assert (tmp_path / "model.pt").exists()


def test_nonfinite_loss_aborts(tmp_path, prepared):
    cfg = tiny_config(train={"lr": 1e6, "grad_clip": 0.0, "warmup_steps": 0, "steps": 50})
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(cfg, scale="tiny-XS", method="latent_tf", seed=0, data_dir=prepared, out_dir=tmp_path,
              progress=False)
    assert not (tmp_path / "model.pt").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared):
    out = tmp_path_factory.mktemp("trained")
    train(tiny_config(), scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=out, progress=False)
    return out / "model.pt"


def test_sampling_is_deterministic_under_a_seed(tmp_path, trained):
    s = tiny_config().sample
    sample_to_npz(trained, tmp_path / "a.npz", s)
    sample_to_npz(trained, tmp_path / "b.npz", s)
    sample_to_npz(trained, tmp_path / "c.npz", s.__class__(**{**s.__dict__, "seed": 1}))
    a, la = load_npz(tmp_path / "a.npz")
    b, lb = load_npz(tmp_path / "b.npz")
    c, _ = load_npz(tmp_path / "c.npz")
    assert a.dtype == np.uint8 and a.shape == (20, 16, 16, 1)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert np.bincount(la).tolist() == [2] * 10  # class-balanced


def test_a_non_finite_sample_stops_sampling_and_writes_nothing(tmp_path, trained, monkeypatch):
    """A diverging rollout (NaN or inf pixels) would become black or white images that the metrics score;
    sampling stops instead, naming the batch, and no sample file is written."""
    import dataclasses

    from pra import sample as S

    real = S.rollout

    def diverging(*args, **kwargs):
        r = real(*args, **kwargs)
        p = r.patches.clone()
        p[1, 3, 0] = float("inf")
        return dataclasses.replace(r, patches=p)

    monkeypatch.setattr(S, "rollout", diverging)
    with pytest.raises(S.NonFiniteSamplesError, match="batch 0: 1 of 10 samples have non-finite pixels"):
        sample_to_npz(trained, tmp_path / "a.npz", tiny_config().sample)
    assert not (tmp_path / "a.npz").exists()


def test_a_guidance_scale_with_non_finite_samples_is_recorded_and_never_chosen(tmp_path, trained, monkeypatch):
    """The sweep scores every scale; one whose samples diverge is kept as a row without a FID and cannot be
    chosen; if every scale diverges the sweep stops, naming the sweep."""
    from pra.evaluate import guidance, metrics, proxy
    from pra.sample import NonFiniteSamplesError

    fids = {1.0: 30.0, 2.0: None, 3.0: 40.0}

    def fake_proxy(net, flow, s, **kw):
        if fids[s.cfg_scale] is None:
            raise NonFiniteSamplesError("sampling batch 0: 3 of 10 samples have non-finite pixels")
        return {"fid": fids[s.cfg_scale], "kid": 0.0, "num_samples": 10, "seconds": 0.1}

    monkeypatch.setattr(proxy, "proxy_metrics", fake_proxy)
    monkeypatch.setattr(metrics, "load_reference", lambda path: {})
    cfg = tiny_config(sample={"cfg_sweep": [3.0, 2.0, 1.0]})
    out = guidance.sweep(trained, cfg, reference="ref.npz", classifier="clf.pt", device="cpu")
    assert out["chosen"] == 1.0
    assert [r["fid"] for r in out["rows"]] == [40.0, None, 30.0] and "non-finite" in out["rows"][1]["non_finite"]
    # the report's table and figure show such a row
    from pra.report.figures import guidance_sweep
    from pra.report.tables import guidance_table

    key = ("tiny-XS", "pra", "pra", 0)
    assert guidance_table({key: out}).frame["proxy FID ↓"].tolist() == ["40.00", "non-finite samples", "30.00"]
    guidance_sweep({key: out}, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
    fids.update({1.0: None, 3.0: None})
    with pytest.raises(NonFiniteSamplesError, match="every guidance scale"):
        guidance.sweep(trained, cfg, reference="ref.npz", classifier="clf.pt", device="cpu")


def test_shards_gather_into_the_adm_npz(tmp_path, trained):
    from pra.sample import gather

    s = tiny_config().sample.__class__(**{**tiny_config().sample.__dict__, "batch_size": 4})
    sample_to_npz(trained, tmp_path / "all.npz", s)
    for k in range(3):
        sample_to_npz(trained, tmp_path / f"shard-{k}.npz", s, shard=k, num_shards=3)
    info = gather([tmp_path / f"shard-{k}.npz" for k in (2, 0, 1)], tmp_path / "gathered.npz",
                  png_dir=tmp_path / "png")
    full, lf = load_npz(tmp_path / "all.npz")
    got, lg = load_npz(tmp_path / "gathered.npz")
    # the same images as one job, shuffled by the permutation of the sampling seed, in the ADM evaluator's layout:
    # consecutive splits (ADM's Inception Score takes splits of 5,000) hold every class, not a run of a few
    order = np.random.default_rng(s.seed).permutation(20)
    assert np.array_equal(got, full[order]) and np.array_equal(lg, lf[order])
    assert np.array_equal(lf, np.sort(lf)) and len(set(lg[:10].tolist())) >= 5
    assert info["order"] == f"batch order shuffled by numpy.random.default_rng({s.seed}).permutation(20)"
    with np.load(tmp_path / "gathered.npz") as f:
        assert f["arr_0"].dtype == np.uint8 and f["arr_0"].shape == (20, 16, 16, 1)
    assert info["count"] == 20 and info["per_class"] == [2] * 10
    assert len(list((tmp_path / "png").glob("*.png"))) == 20
    with pytest.raises(RuntimeError, match="expected 20"):
        gather([tmp_path / "shard-0.npz", tmp_path / "shard-1.npz"], tmp_path / "partial.npz")
    assert not (tmp_path / "partial.npz").exists()
    # a shard drawn at another precision (or with other settings) is not pooled with the others
    from pra.config import SpeedConfig

    sample_to_npz(trained, tmp_path / "shard-1.npz", s, shard=1, num_shards=3,
                  speed=SpeedConfig(sample_precision="bf16"))
    with pytest.raises(RuntimeError, match="disagree on 'speed'"):
        gather([tmp_path / f"shard-{k}.npz" for k in range(3)], tmp_path / "mixed.npz")
    assert not (tmp_path / "mixed.npz").exists()


def test_load_trained_uses_ema(trained):
    net_ema, cfg, meta = load_trained(trained, use_ema=True)
    net_raw, _, _ = load_trained(trained, use_ema=False)
    assert meta["method"] == "pra" and meta["step"] == cfg.train.steps
    diffs = [not torch.equal(a, b) for a, b in zip(net_ema.parameters(), net_raw.parameters())]
    assert any(diffs)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path, damage):
    from pra.checkpoint import CorruptCheckpointError, load_resumable

    for name in ("state.pt", "model.pt"):
        path = tmp_path / name
        torch.save({"format": 2, "weights": torch.zeros(20000)}, path)
        path.write_bytes(path.read_bytes()[:5000] if damage == "truncated" else b"not a checkpoint")
    with pytest.raises(CorruptCheckpointError, match=r"state\.pt: unreadable checkpoint .*delete it: the run then "
                                                     "trains from the start"):
        load_resumable(tmp_path / "state.pt", {})
    with pytest.raises(CorruptCheckpointError, match=r"model\.pt: unreadable .*delete it: then rerun its train job"):
        load_trained(tmp_path / "model.pt")


def test_atomic_writes_keep_the_umask_mode(tmp_path):
    """Results are readable by the group a umask allows (mkstemp alone would make every file 0600)."""
    import os

    from pra.io import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
