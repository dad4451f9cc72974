"""The gap and accumulation diagnostics on a tiny trained model, and the ablation summary's statistics."""
import math

import numpy as np
import pytest
import torch

from pra.data.dataset import PreparedSplit
from pra.diagnostics.accumulation import CONTROL, error_accumulation, hybrid_sets
from pra.diagnostics.gap import NULL, REFERENCE, collect, input_gap
from pra.model.patches import patchify, to_unit
from pra.checkpoint import load_trained


@pytest.fixture(scope="module")
def model_and_data(trained_pra, prepared):
    net, cfg, meta = load_trained(trained_pra, use_ema=True)
    val, tr = PreparedSplit(prepared, "val"), PreparedSplit(prepared, "train")
    return net, cfg, (val.take(np.arange(60)), val.labels[:60]), (tr.take(np.arange(80)), tr.labels[:80])


def test_collected_sets_have_the_right_shapes_and_meaning(model_and_data):
    net, cfg, (imgs, labels), _ = model_and_data
    sets = collect(net, cfg, imgs, labels, seed=0, batch_size=25)
    names = {"teacher_forcing", "pixel_noise", "reconstruction", "pra", "energy_matched", "pra_sequential",
             "parallel_anchored", "anchored_rollout", REFERENCE, NULL}
    assert set(sets["inputs"]) == names and set(sets["hidden"]) == names
    for v in sets["inputs"].values():
        assert v.shape == (60, 15, 16)   # the 15 patches fed back
    for v in sets["hidden"].values():
        assert v.shape == (60, 15, 32)   # h_2..h_16 (h_1 sees only the label)
    x = patchify(to_unit(torch.from_numpy(imgs)), 4).numpy()
    assert np.array_equal(sets["inputs"]["teacher_forcing"], x[:, :-1])
    noise = sets["inputs"]["pixel_noise"] - x[:, :-1]
    assert 0 < np.abs(noise).mean() < cfg.method.pixel_noise_sigma  # sigma drawn from U(0, sigma_max)
    # the sets are fixed by the seed (the same seed rebuilds every set exactly; another draws another
    # rollout), and the null is a second draw of the rollout, not a copy of it
    again = collect(net, cfg, imgs, labels, seed=0, batch_size=25)
    assert all(np.array_equal(sets[sp][k], again[sp][k]) for sp in sets for k in sets[sp])
    other = collect(net, cfg, imgs, labels, seed=1, batch_size=25)
    assert np.array_equal(other["inputs"]["teacher_forcing"], sets["inputs"]["teacher_forcing"])
    assert not np.array_equal(other["inputs"][REFERENCE], sets["inputs"][REFERENCE])
    assert not np.array_equal(sets["inputs"][REFERENCE], sets["inputs"][NULL])
    # PRA's and its twin's first input share the context h_1 (label only) and the perturbation law
    assert np.abs(sets["inputs"]["pra"][:, 1:] - sets["inputs"]["pra_sequential"][:, 1:]).max() > 0


def test_gap_output_has_both_spaces_the_null_and_intervals(model_and_data):
    net, cfg, (imgs, labels), (timgs, tlabels) = model_and_data
    res = input_gap(net, cfg, imgs, labels, timgs, tlabels, pca_dim=4, permutations=20, subsamples=10)
    assert set(res["spaces"]) == {"inputs", "hidden"}
    assert res["spaces"]["inputs"]["positions"] == list(range(1, 16))
    assert res["spaces"]["hidden"]["positions"] == list(range(2, 17))
    # content positions are named in each space's own numbering: the state h_i follows input i - 1
    cin, chid = res["spaces"]["inputs"]["content_positions"], res["spaces"]["hidden"]["content_positions"]
    assert cin and set(cin) <= set(res["spaces"]["inputs"]["positions"])
    assert chid == [p + 1 for p in cin] and set(chid) <= set(res["spaces"]["hidden"]["positions"])
    for space in res["spaces"].values():
        assert set(space["sets"]) == {"teacher_forcing", "pixel_noise", "reconstruction", "pra", "energy_matched",
                                      "pra_sequential", "parallel_anchored", "anchored_rollout", NULL}
        for name, row in space["sets"].items():
            assert len(row["gaussian_kl"]) == 15 and len(row["mmd2_p"]) == 15
            lo, hi = row["ci_mmd2"]
            assert lo <= hi and 0 < row["mmd2_mean_p"] <= 1
            assert ("excess_mmd2" in row) == (name != NULL)
    assert res["settings"]["split"].startswith("val")


def test_hybrid_prefixes_keep_the_true_patches_and_share_the_noise(model_and_data):
    """Set k keeps the true patches before r0 - k exactly and generates the rest from the start noise every set
    shares (it equals a rollout continued from that prefix with that noise); the no-feedback control keeps the
    true patches, then the k positions each generated in one step from the true patches before them, then what
    k = 0 generated; all on the 8-bit grid; the sets are fixed by the seed."""
    from pra.flow import make_flow
    from pra.model.patches import image_patches, on_8bit_grid
    from pra.noise import Noise
    from pra.rollout import SamplerSettings, rollout
    from pra.runtime import generator

    net, cfg, (imgs, labels), _ = model_and_data
    x = image_patches(imgs[:12], 4)
    true = x.numpy()
    sets = hybrid_sets(net, cfg, imgs[:12], labels[:12], [0, 1, 2, 8], 8, seed=0)
    s = SamplerSettings.from_config(cfg.sample)
    init = Noise(generator(0)).randn(12, 16, net.head.out.out_features) * s.temperature  # the first draw
    y = torch.as_tensor(labels[:12])
    for k in (0, 1, 2, 8):
        assert np.allclose(sets[k][:, :8 - k], true[:, :8 - k], atol=1e-6)
        want = on_8bit_grid(rollout(net, make_flow(cfg.model, True), y, s, generator(99), initial=init,
                                    prefix=x[:, :8 - k]).patches).numpy()
        assert np.array_equal(sets[k], want), k
        ctl = sets[(CONTROL, k)]
        assert np.allclose(ctl[:, :8 - k], true[:, :8 - k], atol=1e-6) and np.array_equal(ctl[:, 8:], sets[0][:, 8:])
        if k:  # one-step patches differ from the fed-back ones after the first generated position
            assert np.abs(ctl[:, 8 - k] - sets[k][:, 8 - k]).max() <= 1 / 127.5 + 1e-6  # the same step, batched
            assert k == 1 or not np.array_equal(ctl, sets[k])
        v = sets[k]
        assert np.allclose(np.round((v + 1) * 127.5), (v + 1) * 127.5, atol=1e-4)
    again = hybrid_sets(net, cfg, imgs[:12], labels[:12], [0, 1, 2, 8], 8, seed=0)
    assert all(np.array_equal(sets[k], again[k]) for k in sets)


def test_accumulation_output_reads_region_excess_against_its_nulls(model_and_data):
    net, cfg, (imgs, labels), (timgs, _) = model_and_data
    res = error_accumulation(net, cfg, imgs, labels, timgs, subsamples=10, permutations=19)
    assert res["settings"]["images_a"] == res["settings"]["images_b"] == 30
    assert res["ks"][0] == 0 and res["ks"][-1] == res["r0"] - 1 and res["exposure"][0] == 0
    region, content = res["region_positions"], set(res["content_positions"])
    assert region[0] in content and region[-1] in content and all(p >= res["r0"] for p in region)
    assert len({(p - 1) // 4 for p in region}) == 1  # one grid row
    assert set(res["excess"]) == set(res["p_excess"]) == {str(k) for k in res["ks"][1:]}
    for k, p in res["p_excess"].items():
        assert 1 / 20 <= p <= 1 and res["null_band_excess"][k][0] <= res["null_band_excess"][k][1]
    assert res["summary"]["region_excess"] == res["excess"][str(res["ks"][-1])]
    assert res["summary"]["feedback_effect"] is None and "agreement" not in res  # no classifier given
    assert res["excess_reading"] in ("clearly positive", "clearly negative", "not clearly different from 0")
    assert (res["growth"] is None) == (res["excess_reading"] != "clearly positive")


def test_a_constant_background_does_not_outrank_damaged_content():
    """The failure mode of a per-position bandwidth: at blank positions the real patches are constant up to
    the dequantisation noise, a bandwidth fitted there collapses to that scale, and a construction whose
    background is exactly constant reads a large MMD². With the fixed kernel (fitted on the clean set over
    the content positions) and means over the content positions, a construction with visibly damaged ink
    reads the larger gap, and the exact background reads about as much as clean inputs."""
    from pra.diagnostics import estimators as est
    from pra.diagnostics.gap import TF, compare

    rng = np.random.default_rng(0)
    n, npos, k = 120, 6, 4
    content = np.array([False, True, True, True, True, False])  # the border is blank

    def real_like():
        x = rng.normal(0, 1, (n, npos, k))
        x[:, ~content] = rng.uniform(-1 / 255, 1 / 255, (n, int((~content).sum()), k))  # dequantised black
        return x

    ref, null, tf = real_like(), real_like(), real_like()
    exact_background = real_like()
    exact_background[:, ~content] = 0.0            # the background rendered exactly constant
    damaged = real_like()
    damaged[:, content] = 0.5 * damaged[:, content] + rng.normal(0, 0.3, (n, int(content.sum()), k))
    proj = {"rollout": ref, "rollout_null": null, TF: tf, "exact_background": exact_background,
            "damaged": damaged}
    res = compare(proj, permutations=19, subsamples=20, content=content)["sets"]
    assert res["damaged"]["mean_mmd2"] > 5 * max(res["exact_background"]["mean_mmd2"], 1e-4)
    # position by position too (every position is reported): under the fixed kernel the exact background at
    # a blank position reads less than damaged ink at a content position
    assert res["exact_background"]["mmd2"][0] < res["damaged"]["mmd2"][2]
    assert res["damaged"]["minus_tf_mmd2"] > res["exact_background"]["minus_tf_mmd2"]
    # the artefact itself: a bandwidth fitted at a blank position makes the exact background look far away
    j = 0
    bw = est.median_bandwidth(np.concatenate([ref[:, j], null[:, j]]))
    K = est.gaussian_kernel(np.concatenate([exact_background[:, j], ref[:, j]]), bw)
    a = est.indicator(2 * n, [np.arange(n)])
    per_position = est.mmd2_quadratic(K, a, 1 - a)[0]
    K = est.gaussian_kernel(np.concatenate([damaged[:, 2], ref[:, 2]]), bw)
    assert per_position > est.mmd2_quadratic(K, a, 1 - a)[0]  # blank beats damaged ink under that kernel


def test_the_endpoint_names_are_the_diagnostics_own():
    """pra.endpoints (what the config accepts as an endpoint) names the gap's sets as pra.diagnostics.gap does."""
    from pra import endpoints
    from pra.diagnostics import gap

    assert set(endpoints.GAP_SETS) == {*gap.LATENT_CONSTRUCTIONS, gap.NULL}
    assert set(endpoints.PIXEL_GAP_SETS) == set(gap.PIXEL_CONSTRUCTIONS)
    assert endpoints.needs("gap_hidden_pra_sequential_mmd2_minus_tf") == {"diagnostics", "latent"}
    assert endpoints.needs("gap_inputs_pixel_noise_kl_excess") == {"diagnostics"}


def test_the_paired_proportion_interval_is_newcombes_and_covers_where_discordant_pairs_are_few():
    """Known answers: with no correlation term (phi = 0) the interval is the square-and-add of the two Wilson
    intervals (scipy's); its coverage stays near 95% where a subsampling interval of the mean difference fell to
    61-86% (few discordant pairs), and with no discordant pair it is not a point."""
    from scipy import stats

    from pra.diagnostics.estimators import paired_proportion_difference

    x = np.array([1, 1, 0, 0] * 15, bool)
    y = np.array([1, 0, 1, 0] * 15, bool)  # 15 pairs of each kind: ad - bc = 0, so phi = 0
    d, lo, hi = paired_proportion_difference(x, y)
    w = stats.binomtest(30, 60).proportion_ci(method="wilson")
    assert d == 0 and lo == pytest.approx(-math.hypot(0.5 - w.low, w.high - 0.5))
    assert hi == pytest.approx(math.hypot(w.high - 0.5, 0.5 - w.low))
    rng = np.random.default_rng(0)
    for n, p10, p01 in ((200, 0.10, 0.0), (200, 0.01, 0.0), (200, 0.005, 0.0), (1000, 0.05, 0.02)):
        covered = 0
        for _ in range(400):
            u = rng.random(n)
            y = rng.random(n) < 0.85
            x = y.copy()
            x[(~y) & (u < p10 / 0.15)] = True  # right where the other is wrong: probability p10
            x[y & (u < p01 / 0.85)] = False    # wrong where the other is right: probability p01
            _, lo, hi = paired_proportion_difference(x, y)
            covered += lo <= p10 - p01 <= hi
        assert covered / 400 >= 0.925, (n, p10, p01, covered)
    same = np.ones(200, bool)
    same[:30] = False
    _, lo, hi = paired_proportion_difference(same, same)
    assert lo < 0 < hi  # 200 concordant pairs bound the difference, they do not pin it to 0
    with pytest.raises(ValueError, match="the same items"):
        paired_proportion_difference(same, same[:-1])


def test_the_feedback_effect_per_k_is_paired_and_a_point_only_where_it_is_so_by_construction():
    from pra.diagnostics.accumulation import feedback_effects
    from pra.diagnostics.estimators import paired_proportion_difference

    rng = np.random.default_rng(0)
    n = 400
    own = rng.random(n) < 0.8
    control = own.copy()
    control[np.flatnonzero(~own)[: n // 10]] = True  # the control agrees on 40 images the own rollout gets wrong
    res = feedback_effects({"0": own, "4": own, "8": own}, {"0": own, "4": control, "8": own})
    assert res["feedback_effect"]["0"] == 0 and res["ci_feedback_effect"]["0"] == [0.0, 0.0]
    assert res["feedback_effect"]["4"] == pytest.approx(0.10)
    assert res["ci_feedback_effect"]["4"] == list(paired_proportion_difference(control, own)[1:])
    lo, hi = res["ci_feedback_effect"]["4"]
    assert 0.05 < lo < 0.10 < hi < 0.15
    lo8, hi8 = res["ci_feedback_effect"]["8"]
    assert lo8 < 0 < hi8  # no discordant image at k = 8 is not certainty
    assert res["agreement"]["4"] == pytest.approx(own.mean()) and res["agreement_control"]["4"] == pytest.approx(
        control.mean()) and res["agreement_images"] == n
    flipped = feedback_effects({"4": control}, {"4": own}, structural=())
    assert flipped["ci_feedback_effect"]["4"] == pytest.approx([-hi, -lo])
    with pytest.raises(ValueError, match="the same images"):
        feedback_effects({"4": own}, {"4": control[:-1]})
    with pytest.raises(ValueError, match="one completion by construction"):
        feedback_effects({"0": own}, {"0": control})
