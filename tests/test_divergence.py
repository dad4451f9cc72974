"""Estimators against closed forms."""
import numpy as np
import pytest

from pra.ablate.divergence import PCABasis, frechet, gaussian_kl, gaussian_kl_closed, knn_kl


def test_gaussian_kl_closed_form_1d():
    # KL(N(0, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2
    got = gaussian_kl_closed(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1))
    assert got == pytest.approx(np.log(2) + 2 / 8 - 0.5, rel=1e-12)


def test_gaussian_kl_from_samples():
    rng = np.random.default_rng(0)
    p = rng.normal(0, 1, (20000, 3))
    q = rng.normal(0.5, 2, (20000, 3))
    expected = 3 * (np.log(2) + (1 + 0.25) / 8 - 0.5)
    assert gaussian_kl(p, q, shrinkage=0.0) == pytest.approx(expected, rel=0.03)
    assert abs(gaussian_kl(p, rng.normal(0, 1, (20000, 3)), shrinkage=0.0)) < 0.01


@pytest.mark.parametrize("d", [1, 2, 4])
def test_knn_kl_converges_to_the_closed_form(d):
    """Two known Gaussians, 4000 samples each: within 0.08 nats of the truth (stated tolerance)."""
    rng = np.random.default_rng(d)
    mu = np.full(d, 0.7)
    p = rng.normal(0, 1, (4000, d))
    q = rng.normal(0, 1, (4000, d)) * 1.5 + mu
    truth = gaussian_kl_closed(np.zeros(d), np.eye(d), mu, 2.25 * np.eye(d))
    assert knn_kl(p, q, k=5) == pytest.approx(truth, abs=0.08)


def test_identical_distributions_give_about_zero():
    rng = np.random.default_rng(3)
    p, q = rng.normal(size=(3000, 4)), rng.normal(size=(3000, 4))
    assert abs(knn_kl(p, q)) < 0.05 and abs(gaussian_kl(p, q)) < 0.01 and frechet(p, q) < 0.02


def test_frechet_matches_closed_form_and_pca_is_fixed():
    rng = np.random.default_rng(4)
    p = rng.normal(0, 1, (50000, 2))
    q = rng.normal(1, 2, (50000, 2))
    assert frechet(p, q) == pytest.approx(2 * 1 + 2 * (1 - 2) ** 2, rel=0.03)
    basis = PCABasis(rng.normal(size=(500, 6)) * np.arange(1, 7), k=2)
    assert basis(np.zeros((1, 6))).shape == (1, 2) and 0 < basis.explained <= 1
    assert np.argmax(np.abs(basis.components[0])) == 5  # the highest-variance axis first
