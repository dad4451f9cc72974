"""Metric code against closed forms and against torch-fidelity's own high-level API."""
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from pra.data.dataset import PreparedSplit
from pra.evaluate.classifier import class_agreement, train_classifier
from pra.evaluate.metrics import (FeatureSpace, extract, frechet_distance, load_reference, sample_metrics,
                                  save_reference, statistics)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, prepared32):
    out = tmp_path_factory.mktemp("clf")
    info = train_classifier(prepared32, out, epochs=3, seed=0)
    return out / "classifier.pt", info


def _space(classifier):
    return FeatureSpace("classifier", str(classifier[0]))


def _fid(a, b, space):
    fa, fb = extract(a, space), extract(b, space)
    L = space.layers["fid"]
    return frechet_distance(statistics(fa[L]), statistics(fb[L]))


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    # diagonal: FD = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    got = frechet_distance({"mu": mu1, "sigma": np.diag(v1)}, {"mu": mu2, "sigma": np.diag(v2)})
    assert got == pytest.approx(expected, rel=1e-9)
    # a full covariance and its rotation: FD between N(0, S) and N(0, R S R^T) with commuting... use S vs 4S
    a = rng.normal(size=(d, d))
    s = a @ a.T + d * np.eye(d)
    assert frechet_distance({"mu": mu1, "sigma": s}, {"mu": mu1, "sigma": 4 * s}) == \
        pytest.approx(np.trace(s) + np.trace(4 * s) - 2 * np.trace(2 * s), rel=1e-8)


def test_classifier_learns_the_digits(classifier):
    assert classifier[1]["val_accuracy"] > 0.8


def test_fid_is_zero_for_identical_sets_and_grows_with_shift(classifier, prepared32):
    space = _space(classifier)
    x = PreparedSplit(prepared32, "train").all_images()[:600]
    assert abs(_fid(x, x.copy(), space)) < 1e-6
    shifted = []
    for k in (1, 3, 6):  # translate right by k pixels: increasingly off-distribution
        y = np.zeros_like(x)
        y[:, :, k:] = x[:, :, :-k]
        shifted.append(_fid(x, y, space))
    assert 0.05 < shifted[0] < shifted[1] < shifted[2], shifted
    noise = np.random.default_rng(0).integers(0, 256, x.shape, dtype=np.uint8)
    assert _fid(x, noise, space) > shifted[2]


class _U8(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]).permute(2, 0, 1)


def test_feature_path_agrees_with_torch_fidelity_calculate_metrics(classifier, prepared32):
    import torch_fidelity

    space = _space(classifier)
    tr = PreparedSplit(prepared32, "train").all_images()
    a, b = tr[:500], tr[500:1000].copy()
    b[:, :, 2:] = b[:, :, :-2]
    ours = _fid(a, b, space)
    ref = torch_fidelity.calculate_metrics(input1=_U8(a), input2=_U8(b), fid=True, cuda=False, cache=False,
                                           verbose=False, save_cpu_ram=True, feature_extractor=space.extractor,
                                           feature_extractor_weights_path=space.weights)
    assert ours == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)


def test_sample_metrics_on_real_data(classifier, prepared32, tmp_path):
    space = _space(classifier)
    tr, va = PreparedSplit(prepared32, "train"), PreparedSplit(prepared32, "val")
    ft = extract(tr.all_images(), space)
    save_reference(tmp_path / "ref.npz", statistics(ft["penultimate"]), ft["penultimate"], "train")
    ref = load_reference(tmp_path / "ref.npz")
    real = sample_metrics(extract(va.all_images(), space), space, ref, kid_subset_size=300)
    noise = np.random.default_rng(0).integers(0, 256, (359, 32, 32, 1), dtype=np.uint8)
    fake = sample_metrics(extract(noise, space), space, ref, kid_subset_size=300)
    assert real["fid"] < fake["fid"] and real["kid"] < fake["kid"]
    assert real["precision"] > 0.8 and real["recall"] > 0.8 and fake["precision"] < 0.1
    assert real["is"] > fake["is"] and real["num_samples"] == 359 and "pra-classifier" in real["extractor"]


def test_class_agreement_on_real_images(classifier, prepared32):
    """Known answers: relabelling k images the classifier gets right to a class it does not predict lowers
    the agreement by exactly k/n and the per-class rates of the classes involved as counted by hand; labels
    the classifier never predicts give 0."""
    from pra.evaluate.classifier import load_classifier, predict

    va = PreparedSplit(prepared32, "val")
    images, labels = va.all_images(), va.labels
    pred = predict(load_classifier(classifier[0]), images)[1].argmax(1)
    good = class_agreement(images, labels, classifier[0])
    assert good["accuracy"] > 0.5 and len(good["per_class"]) == 10
    right = np.flatnonzero(pred == labels)[:40]
    changed = labels.copy()
    changed[right] = (pred[right] + 1) % 10  # now disagreeing, by construction
    worse = class_agreement(images, changed, classifier[0])
    assert worse["accuracy"] == pytest.approx(good["accuracy"] - len(right) / len(labels), abs=1e-12)
    for c in range(10):
        sel = changed == c
        want = float((pred[sel] == c).mean()) if sel.any() else float("nan")
        assert worse["per_class"][c] == pytest.approx(want, nan_ok=True)
    assert class_agreement(images, (pred + 1) % 10, classifier[0])["accuracy"] == 0.0


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """An Inception weights file with random weights (the real one cannot be downloaded here)."""
    from unittest import mock

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_path_offline_with_local_weights(random_inception):
    space = FeatureSpace("inception", str(random_inception), "")  # random weights: no digest to match
    imgs = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 1), dtype=np.uint8)  # grayscale -> RGB
    f = extract(imgs, space)
    assert f["2048"].shape == (6, 2048) and f["logits_unbiased"].shape[0] == 6
    assert f["2048"].dtype == torch.float64


def test_inception_weights_other_than_the_published_file_are_refused_unless_accepted(random_inception):
    """The published file's name carries the start of its sha256; a file with another digest would score in
    another feature space, so extraction refuses it (naming the digest and the key) unless the prefix is emptied
    or names that file's own digest."""
    import hashlib

    from pra.evaluate.inception_file import PUBLISHED_NAME, PUBLISHED_SHA256_PREFIX, check_inception_weights

    from pra.config import EvaluateConfig

    # the config's default is the published name's hash part (two literals: the config imports no evaluation code)
    assert EvaluateConfig().inception_sha256_prefix == PUBLISHED_SHA256_PREFIX == PUBLISHED_NAME.rsplit("-")[-1][:-4]
    digest = hashlib.sha256(random_inception.read_bytes()).hexdigest()
    assert not digest.startswith(PUBLISHED_SHA256_PREFIX)
    imgs = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=f"sha256 {digest}, which does not start with 6726825d .*inception_sha256"):
        extract(imgs, FeatureSpace("inception", str(random_inception)))
    assert check_inception_weights(random_inception, "") == digest
    assert check_inception_weights(random_inception, digest[:8].upper()) == digest
    assert check_inception_weights(random_inception, digest) == digest
    with pytest.raises(ValueError, match="does not start with"):
        check_inception_weights(random_inception, digest[:-1] + ("0" if digest[-1] != "0" else "1"))
    with pytest.raises(FileNotFoundError, match="does not exist.*torch-fidelity"):
        check_inception_weights(random_inception.parent / "missing.pth", "")
    with pytest.raises(FileNotFoundError, match="is a folder, not the weights file"):
        check_inception_weights(random_inception.parent, "")


def test_inception_refuses_clearly_without_weights(tmp_path):
    imgs = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(FileNotFoundError, match="inception_weights"):
        extract(imgs, FeatureSpace("inception", ""))
    with pytest.raises(FileNotFoundError, match="not found"):
        extract(imgs, FeatureSpace("inception", str(tmp_path / "missing.pth")))


def test_adm_reference_batch_is_converted_once_and_checked(tmp_path, random_inception):
    """ADM's reference batch (mu, sigma, arr_0): the reference job keeps its statistics and extracts its images'
    features once; a batch of another resolution or feature space is refused, and the raw file is never scored
    against directly (its images would be re-encoded, on the CPU, by every job)."""
    from pra.evaluate.reference import convert_adm_reference

    rng = np.random.default_rng(1)
    mu, a = rng.normal(size=2048), rng.normal(size=(2048, 16))
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    adm = tmp_path / "VIRTUAL_ref.npz"
    np.savez(adm, mu=mu.astype(np.float32), sigma=(a @ a.T).astype(np.float32), arr_0=images)
    space = FeatureSpace("inception", str(random_inception), "")  # random weights: no digest to match
    info = convert_adm_reference(adm, space, tmp_path / "reference.npz", resolution=32)
    ref = load_reference(tmp_path / "reference.npz")
    assert ref["stats"]["mu"].dtype == np.float64 and np.array_equal(ref["stats"]["mu"], mu.astype(np.float32))
    assert ref["features"].shape == (5, 2048) and info["count"] == 5
    assert np.allclose(ref["features"], extract(images, space)["2048"].numpy())
    assert "ADM reference batch" in ref["description"] and "sha256" in ref["description"]
    with pytest.raises(ValueError, match="reference_stats"):
        load_reference(adm)
    with pytest.raises(ValueError, match="64x64"):  # ADM's 64x64 batch for a 256 experiment, here 32 vs 64
        convert_adm_reference(adm, space, tmp_path / "r64.npz", resolution=64)
    np.savez(tmp_path / "small.npz", mu=mu[:64], sigma=np.eye(64), arr_0=images)
    with pytest.raises(ValueError, match="2048-d"):
        convert_adm_reference(tmp_path / "small.npz", space, tmp_path / "r.npz", resolution=32)
    with pytest.raises(ValueError, match="inception_weights"):
        convert_adm_reference(adm, FeatureSpace("classifier", "clf.pt"), tmp_path / "r.npz", resolution=32)
    np.savez(tmp_path / "samples_batch.npz", arr_0=images)  # an ADM sample batch given by mistake
    with pytest.raises(ValueError, match="sample batches do not"):
        convert_adm_reference(tmp_path / "samples_batch.npz", space, tmp_path / "r.npz", resolution=32)
    np.savez(tmp_path / "bad.npz", m=mu)
    with pytest.raises(ValueError, match="mu"):
        load_reference(tmp_path / "bad.npz")
    assert not (tmp_path / "r.npz").exists() and not (tmp_path / "r64.npz").exists()


def test_features_are_extracted_without_tf32(monkeypatch, classifier):
    """cuDNN may use TF32 for fp32 convolutions by default; the samples' features must come from the same fp32
    path as the reference's, so extraction turns it off (and restores it)."""
    import torch_fidelity.utils

    seen = []
    real = torch_fidelity.utils.create_feature_extractor

    def spy(*a, **k):
        fe = real(*a, **k)
        forward = fe.forward

        def recording(x):
            seen.append(torch.backends.cudnn.allow_tf32)
            return forward(x)
        fe.forward = recording
        return fe
    monkeypatch.setattr(torch_fidelity.utils, "create_feature_extractor", spy)
    before = torch.backends.cudnn.allow_tf32
    extract(np.zeros((3, 32, 32, 1), dtype=np.uint8), _space(classifier), batch_size=2)
    assert seen == [False, False] and torch.backends.cudnn.allow_tf32 == before