"""Collection of inputs per construction, the gap and accumulation outputs, and ablation summaries."""
import numpy as np
import pytest
import torch

from pra.ablate.accumulate import error_accumulation
from pra.ablate.gap import collect_inputs, input_gap
from pra.data.dataset import PreparedSplit
from pra.model.patches import patchify, to_unit
from pra.train import load_trained


@pytest.fixture(scope="module")
def model_and_data(trained_pra, prepared):
    net, cfg, meta = load_trained(trained_pra, use_ema=True)
    tr = PreparedSplit(prepared, "train")
    return net, cfg, tr.take(np.arange(60)), tr.labels[:60]


def test_collected_inputs_have_the_right_shapes_and_meaning(model_and_data):
    net, cfg, imgs, labels = model_and_data
    inputs = collect_inputs(net, cfg, imgs, labels, seed=0, batch_size=25)
    assert set(inputs) == {"teacher_forcing", "pixel_noise", "pra", "rollout"}
    for v in inputs.values():
        assert v.shape == (60, 16, 16)
    x = patchify(to_unit(torch.from_numpy(imgs)), 4).numpy()
    assert np.array_equal(inputs["teacher_forcing"], x)
    noise = inputs["pixel_noise"] - x
    assert 0 < np.abs(noise).mean() < cfg.method.pixel_noise_sigma  # sigma drawn from U(0, sigma_max)
    assert not np.allclose(inputs["rollout"], x)


def test_collection_uses_the_given_weights(model_and_data):
    net, cfg, imgs, labels = model_and_data
    a = collect_inputs(net, cfg, imgs[:10], labels[:10], seed=0)
    other = type(net)(*_rebuild_args(net, cfg)).eval()
    b = collect_inputs(other, cfg, imgs[:10], labels[:10], seed=0)
    assert np.array_equal(a["teacher_forcing"], b["teacher_forcing"])
    assert not np.allclose(a["pra"], b["pra"]) and not np.allclose(a["rollout"], b["rollout"])


def _rebuild_args(net, cfg):
    from pra.model.scales import get_scale

    with torch.random.fork_rng():
        torch.manual_seed(123)
        return (get_scale("tiny-XS"), cfg.model, net.geometry, "pra")


def test_gap_and_accumulation_outputs(model_and_data):
    net, cfg, imgs, labels = model_and_data
    inputs = collect_inputs(net, cfg, imgs, labels, seed=0)
    res = input_gap(inputs, pca_dim=4, bootstrap_reps=3)
    assert res["positions"] == list(range(1, 16))
    for c in ("teacher_forcing", "pixel_noise", "pra"):
        r = res["constructions"][c]
        assert len(r["knn_kl"]) == 15 and len(r["gaussian_kl"]) == 15
        lo, hi = r["ci_knn_kl"]
        assert lo <= hi
    # a construction compared with itself has no gap
    same = input_gap({**inputs, "rollout": inputs["teacher_forcing"]}, pca_dim=4, bootstrap_reps=2,
                     dequantise=False)
    assert abs(same["constructions"]["teacher_forcing"]["mean_gaussian_kl"]) < 1e-9
    deq = input_gap({**inputs, "rollout": inputs["teacher_forcing"].copy()}, pca_dim=4, bootstrap_reps=2)
    assert deq["settings"]["dequantisation"].startswith("U(")
    assert abs(deq["constructions"]["teacher_forcing"]["mean_gaussian_kl"]) < 0.05

    samples = np.clip(imgs.astype(int) + 3, 0, 255).astype(np.uint8)
    acc = error_accumulation(net, cfg, imgs, labels, samples, pca_dim=4)
    assert len(acc["fd_rollout"]) == 16 and len(acc["fd_one_step"]) == 16
    assert all(v >= -1e-6 for v in acc["fd_rollout"])
    same = error_accumulation(net, cfg, imgs, labels, imgs, pca_dim=4)
    assert max(abs(v) for v in same["fd_rollout"]) < 1e-6  # generated == real -> zero distance


def _variant(name, method, fids, overrides=None):
    vals = list(fids)
    return {"name": name, "method": method, "overrides": overrides or {},
            "metrics": {"fid": {"mean": float(np.mean(vals)), "n": len(vals), "values": vals,
                                "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}}}


def test_outcome_calls_a_difference_only_beyond_twice_the_seed_spread():
    from pra.ablate.summary import outcome

    settle = {"variants": [_variant("pra", "pra", [7.0, 7.2, 7.4]), _variant("latent_tf", "latent_tf", [30, 35, 40]),
                           _variant("pixel_noise", "pixel_noise", [6.0, 8.0, 10.0])]}
    lines = outcome(settle)
    assert any(ln.startswith("FID: PRA vs the same architecture") and ": better (7.20 vs 35.00" in ln for ln in lines)
    assert any("pixel-space noise injection (pixel_noise): not clearly different (7.20 vs 8.00" in ln
               for ln in lines), lines
    # a one-method ablation: every variant against the one without overrides, either direction
    sweep = {"variants": [_variant("t=0.5 (default)", "pra", [8.0, 8.1, 7.9]),
                          _variant("t=1", "pra", [6.0, 6.1, 5.9], {"method": {"t_min": 1.0}}),
                          _variant("t=0.25", "pra", [8.5, 7.0, 9.5], {"method": {"t_min": 0.25}})]}
    lines = outcome(sweep)
    assert "FID: t=1 vs t=0.5 (default): better (6.00 vs 8.00; beyond twice the seed spread" in lines[0]
    assert "FID: t=0.25 vs t=0.5 (default): not clearly different" in lines[1]
    one_seed = {"variants": [_variant("a", "pra", [5.0]), _variant("b", "pra", [9.0], {"model": {"z_dim": 8}})]}
    assert "higher on one seed (9.00 vs 5.00); the seed-to-seed spread is unknown, so this is not a verdict" \
        in outcome(one_seed)[0]
