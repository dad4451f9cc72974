import numpy as np
import pytest

from pra.data.dataset import PreparedSplit
from pra.evaluate.classifier import train_classifier
from pra.evaluate.fid import class_agreement, fid_torch_fidelity


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, prepared32):
    out = tmp_path_factory.mktemp("clf")
    info = train_classifier(prepared32, out, epochs=3, seed=0)
    return out / "classifier.pt", info


def test_classifier_learns_the_digits(classifier):
    assert classifier[1]["val_accuracy"] > 0.8


def test_fid_is_zero_for_identical_sets_and_grows_with_shift(classifier, prepared32):
    path = classifier[0]
    x = PreparedSplit(prepared32, "train").all_images()[:600]
    assert abs(fid_torch_fidelity(x, x.copy(), path)) < 1e-3
    shifted = []
    for k in (1, 3, 6):  # translate right by k pixels: increasingly off-distribution
        y = np.zeros_like(x)
        y[:, :, k:] = x[:, :, :-k]
        shifted.append(fid_torch_fidelity(x, y, path))
    assert 0.05 < shifted[0] < shifted[1] < shifted[2], shifted
    noise = np.random.default_rng(0).integers(0, 256, x.shape, dtype=np.uint8)
    assert fid_torch_fidelity(x, noise, path) > shifted[2]


def test_class_agreement_on_real_images(classifier, prepared32):
    va = PreparedSplit(prepared32, "val")
    good = class_agreement(va.all_images(), va.labels, classifier[0])
    bad = class_agreement(va.all_images(), (va.labels + 1) % 10, classifier[0])
    assert abs(good["accuracy"] - classifier[1]["val_accuracy"]) < 1e-9
    assert bad["accuracy"] < 0.1 and len(good["per_class"]) == 10
