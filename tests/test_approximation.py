"""The approximation-error instrument (pra.diagnostics.approximation) on known answers."""
import numpy as np
import pytest
import torch

from conftest import tiny_config
from pra.checkpoint import build_network, load_trained
from pra.data.dataset import PreparedSplit
from pra.diagnostics import approximation as A
from pra.model.network import Geometry


def _untrained(cfg, method="pra", seed=0):
    """A tiny latent network whose zero-initialised output layers get small random weights, so that the head
    and decoder are not identically zero (an untrained network is enough for identities)."""
    net = build_network(cfg, "tiny-XS", method, Geometry(16, 1, 4, 10), init_seed=seed)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if bool((p == 0).all()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def val(prepared):
    v = PreparedSplit(prepared, "val")
    return v.take(np.arange(40)), v.labels[:40]


@pytest.mark.parametrize("law", ["interpolant", "variance_preserving"])
def test_without_perturbation_the_twin_is_the_anchored_rollout(val, law):
    """t_min = 1: z~ = z under every law and the anchored ODE has nothing to integrate, so the twin's inputs (its
    own context) are the anchored rollout's exactly; PRA's differ (teacher-forced context)."""
    cfg = tiny_config(method={"t_min": 1.0, "perturbation_law": law})
    sets = A.constructions(_untrained(cfg), cfg, *val, batch_size=16)
    assert np.abs(sets["twin"] - sets["anchored"]).max() < 1e-5
    assert np.abs(sets["pra"] - sets["anchored"]).max() > 1e-3


def test_the_three_constructions_share_their_noise(val):
    """A velocity head that outputs 0 leaves the anchored ODE where it starts, at z~ = t z + (1 - t) eps: then
    the anchored rollout's inputs equal the twin's exactly at t_min = 0.5, which holds only if the rollout
    starts from the same eps as the twin (a fresh draw would move it)."""
    cfg = tiny_config(method={"t_min": 0.5})
    net = _untrained(cfg)
    with torch.no_grad():
        net.head.out.weight.zero_()
        net.head.out.bias.zero_()
    sets = A.constructions(net, cfg, *val, batch_size=16)
    assert np.abs(sets["twin"] - sets["anchored"]).max() < 1e-5
    assert np.abs(sets["twin"] - sets["true"]).max() > 1e-2  # and the perturbation is really there


def test_a_decoder_without_context_makes_pra_and_its_twin_one_construction(val):
    cfg = tiny_config(model={"decoder_context": False})
    sets = A.constructions(_untrained(cfg), cfg, *val, batch_size=16)
    assert np.abs(sets["pra"] - sets["twin"]).max() < 1e-5
    assert np.abs(sets["pra"] - sets["anchored"]).max() > 1e-3  # the ODE moves the anchored state


def test_the_constructions_are_fixed_by_their_seed():
    cfg = tiny_config()
    net = _untrained(cfg)
    images = np.zeros((8, 16, 16, 1), np.uint8)
    images[:, 4:12, 6:10] = 200
    labels = np.arange(8) % 10
    a = A.constructions(net, cfg, images, labels, batch_size=8, seed=3)
    b = A.constructions(net, cfg, images, labels, batch_size=8, seed=3)
    c = A.constructions(net, cfg, images, labels, batch_size=8, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["pra"], c["pra"]) and np.array_equal(a["true"], c["true"])


def test_summary_ratios_known_answer_and_content_rule():
    """Distances built by hand: PRA at 0.5 and the twin at 0.25 of the anchored rollout's distance to the data
    read ratios 0.5 and 0.25 with intervals around them, and only the inked positions are summarised."""
    rng = np.random.default_rng(0)
    n, N = 200, 6
    to_true = rng.uniform(1.0, 2.0, size=(n, N))
    d = {"anchored_to_true": to_true, "pra": 0.5 * to_true, "twin": 0.25 * to_true}
    real = -np.ones((n, N, 4))
    real[:, 2:4, 0] = 0.5  # ink at positions 3 and 4 in every image
    real[:10, 5, 1] = 0.9  # and at position 6 in 5% of them
    content = A.content_positions(real)
    assert content.tolist() == [False, False, True, True, False, False]
    s = A.summarise(d, content, subsamples=50)
    assert s["content_positions"] == [3, 4]
    pra, twin = s["constructions"]["pra"], s["constructions"]["twin"]
    assert pra["content_ratio"] == pytest.approx(0.5) and twin["content_ratio"] == pytest.approx(0.25)
    assert pra["ci_content_ratio"][0] <= 0.5 <= pra["ci_content_ratio"][1]
    assert s["pra_minus_twin_content_ratio"] == pytest.approx(0.25)
    assert all(r == pytest.approx(0.5) for r in pra["ratio"])


def test_on_a_trained_model_the_report_is_complete(trained_pra, prepared):
    net, cfg, _ = load_trained(trained_pra)
    v = PreparedSplit(prepared, "val")
    res = A.approximation_error(net, cfg, v.take(np.arange(30)), v.labels[:30], subsamples=20)
    assert res["applicable"] and res["positions"] == list(range(1, 17))
    for k in A.CONSTRUCTIONS:
        row = res["constructions"][k]
        assert len(row["ratio"]) == 16 and row["content_ratio"] > 0
        lo, hi = row["ci_content_ratio"]
        assert lo <= row["content_ratio"] <= hi
    assert "content_rule" in res["settings"]


def test_under_another_law_pra_leaves_the_anchored_start(val):
    """With a zero velocity head (the head starts at zero output) the anchored rollout stays at its start
    t z + (1 - t) eps, the flow's path, under every law; the twin renders the run's law's state from the same
    draws: equal to the anchored rollout under the interpolant (above), different under the other two laws, and
    different between them. The instrument measures the law's distance to the sampler's path."""
    twins, anchored = {}, {}
    for law in ("variance_preserving", "additive"):
        cfg = tiny_config(method={"t_min": 0.5, "perturbation_law": law})
        net = _untrained(cfg)
        with torch.no_grad():
            net.head.out.weight.zero_()
            net.head.out.bias.zero_()
        sets = A.constructions(net, cfg, *val, batch_size=16)
        twins[law], anchored[law] = sets["twin"], sets["anchored"]
        assert np.abs(sets["twin"] - sets["anchored"]).max() > 1e-3
    assert np.abs(anchored["variance_preserving"] - anchored["additive"]).max() < 1e-6  # the law never moves it
    assert np.abs(twins["variance_preserving"] - twins["additive"]).max() > 1e-3
