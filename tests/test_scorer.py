"""The feature space a study scores in: the classifier's identity (weights digest, the images it was trained on),
carrying a classifier to another machine, and a block that refuses to score in another feature space."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run, snakemake
from pra.data.dataset import PreparedSplit, data_sha256
from pra.evaluate.classifier import carry_classifier, load_classifier, predict, train_classifier, weights_sha256


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared):
    out = tmp_path_factory.mktemp("clf")
    info = train_classifier(prepared, out / "a", epochs=1, seed=0)
    return out, info


def test_the_data_digest_follows_the_content_not_the_folder(prepared, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    assert data_sha256(copy) == data_sha256(prepared)
    assert PreparedSplit(copy, "train").sha256() != PreparedSplit(copy, "val").sha256()
    shard = sorted(copy.glob("train*.images.npy"))[0]
    images = np.load(shard)
    images[3, 2, 2, 0] ^= 1  # one pixel of one image
    np.save(shard, images)
    assert data_sha256(copy) != data_sha256(prepared)
    shutil.copyfile(sorted(prepared.glob("train*.images.npy"))[0], shard)
    labels = sorted(copy.glob("train*.labels.npy"))[0]
    lab = np.load(labels)
    lab[[0, 1]] = lab[[1, 0]] if lab[0] != lab[1] else (lab[0], (lab[1] + 1) % 10)
    np.save(labels, lab)
    assert data_sha256(copy) != data_sha256(prepared)


def test_a_classifier_records_its_weights_and_the_images_it_was_trained_on(trained, prepared):
    out, info = trained
    assert info["data_sha256"] == data_sha256(prepared) and info["source"] == "trained here"
    assert info["sha256"] == weights_sha256(load_classifier(out / "a/classifier.pt"))
    assert json.loads((out / "a/classifier.json").read_text())["sha256"] == info["sha256"]
    from pra.runtime import cpu_kernels, cpu_model

    assert info["cpu_model"] == cpu_model() and info["torch"] == torch.__version__
    # what picks the kernels beyond the model name: torch's vector capability (and, on Linux, family and model)
    assert info["cpu_kernels"] == cpu_kernels() and f"torch {torch.backends.cpu.get_cpu_capability()}" in info["cpu_kernels"]
    # the same seed on the same machine gives the same weights; another seed another feature space
    assert train_classifier(prepared, out / "b", epochs=1, seed=0)["sha256"] == info["sha256"]
    assert train_classifier(prepared, out / "c", epochs=1, seed=1)["sha256"] != info["sha256"]


def test_a_carried_classifier_scores_in_the_same_feature_space(trained, prepared, tmp_path):
    out, info = trained
    got = carry_classifier(out / "a", prepared, tmp_path / "carried")
    assert got["sha256"] == info["sha256"] and got["source"].startswith("carried from ")
    assert got["val_accuracy"] == info["val_accuracy"]
    images = PreparedSplit(prepared, "val").all_images()[:50]
    f0, _ = predict(load_classifier(out / "a/classifier.pt"), images)
    f1, _ = predict(load_classifier(tmp_path / "carried/classifier.pt"), images)
    assert np.array_equal(f0, f1)
    assert json.loads((tmp_path / "carried/classifier.json").read_text())["sha256"] == info["sha256"]


def test_carrying_refuses_another_dataset_altered_weights_and_an_unlabelled_classifier(trained, prepared,
                                                                                     prepared32, tmp_path):
    out, _ = trained
    with pytest.raises(ValueError, match="trained on other images"):
        carry_classifier(out / "a", prepared32, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="evaluate.classifier_dir.*no classifier.pt"):
        carry_classifier(tmp_path, prepared, tmp_path / "x")
    bad = tmp_path / "bad"
    shutil.copytree(out / "a", bad)
    ck = torch.load(bad / "classifier.pt", weights_only=False)
    next(iter(ck["state_dict"].values())).add_(1e-3)
    torch.save(ck, bad / "classifier.pt")
    with pytest.raises(ValueError, match="does not hold the weights"):
        carry_classifier(bad, prepared, tmp_path / "x")
    old = tmp_path / "old"
    shutil.copytree(out / "a", old)
    info = json.loads((old / "classifier.json").read_text())
    info.pop("data_sha256")
    (old / "classifier.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="does not say which images"):
        carry_classifier(old, prepared, tmp_path / "x")



def test_a_refused_carry_leaves_the_classifier_in_place(trained, prepared, tmp_path):
    out, info = trained
    carry_classifier(out / "a", prepared, tmp_path / "x")
    before = {n: (tmp_path / "x" / n).read_bytes() for n in ("classifier.pt", "classifier.json")}
    other = tmp_path / "other"
    train_classifier(prepared, other, epochs=1, seed=3)
    ck = torch.load(other / "classifier.pt", weights_only=False)
    next(iter(ck["state_dict"].values())).add_(1e-3)  # weights that are not the ones its info names
    torch.save(ck, other / "classifier.pt")
    with pytest.raises(ValueError, match="does not hold the weights"):
        carry_classifier(other, prepared, tmp_path / "x")
    assert {n: (tmp_path / "x" / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["classifier.json", "classifier.pt"]
    with pytest.raises(ValueError, match="is the source folder itself"):
        carry_classifier(tmp_path / "x", prepared, tmp_path / "x")
    assert {n: (tmp_path / "x" / n).read_bytes() for n in before} == before


def test_a_copy_that_does_not_hold_the_weights_replaces_nothing(trained, prepared, tmp_path, monkeypatch):
    out, _ = trained
    carry_classifier(out / "a", prepared, tmp_path / "x")
    before = {n: (tmp_path / "x" / n).read_bytes() for n in ("classifier.pt", "classifier.json")}
    other = tmp_path / "other"
    train_classifier(prepared, other, epochs=1, seed=3)

    wrong = (out / "a/classifier.pt").read_bytes()

    def corrupt(src, dst, *a, **k):  # the bytes of another classifier arrive instead
        Path(dst).write_bytes(wrong)
        return dst

    monkeypatch.setattr(shutil, "copyfile", corrupt)
    with pytest.raises(OSError, match="the copy does not hold the source's weights"):
        carry_classifier(other, prepared, tmp_path / "x")
    assert {n: (tmp_path / "x" / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["classifier.json", "classifier.pt"]  # no temp
    # a carry of a carry keeps where the classifier was trained
    again = carry_classifier(tmp_path / "x", prepared, tmp_path / "y")
    assert again["origin"] == f"trained in {(out / 'a').resolve()}"
    assert again["source"] == f"carried from {(tmp_path / 'x').resolve()}"


def test_a_block_in_another_feature_space_is_refused_unless_accepted():
    from pra.study import BlockConfig, check_scorer

    block = BlockConfig(id="m3", experiment="e.yaml", ablation="main", seeds=[4])
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    assert check_scorer(block, a, {"m1": a, "m2": a}, None) is False  # the same classifier
    assert check_scorer(block, a, {}, "no earlier block") is False  # the first block: nothing to differ from
    with pytest.raises(SystemExit, match=r"differs from the one blocks \['m1', 'm2'\].*--classifier"):
        check_scorer(block, b, {"m1": a, "m2": a}, None)
    assert check_scorer(block, b, {"m1": a}, "the first machine's disk was lost") is True
    # after an accepted change both classifiers are the study's; a third is refused again
    m4 = BlockConfig(id="m4", experiment="e.yaml", ablation="main", seeds=[6])
    assert check_scorer(m4, a, {"m1": a, "m3": b}, None) is False
    assert check_scorer(m4, b, {"m1": a, "m3": b}, None) is False
    with pytest.raises(SystemExit, match="differs"):
        check_scorer(m4, c, {"m1": a, "m3": b}, None)
    pilot = BlockConfig(id="p0", experiment="e.yaml", ablation="main", seeds=[4], phase="pilot")
    assert check_scorer(pilot, b, {"m1": a}, None) is False  # a pilot is never pooled


def test_the_record_names_the_feature_network_the_evaluations_load(trained, prepared, tmp_path):
    from pra.config import ConfigError, ExperimentConfig
    from pra.study import feature_digest, scorer_record

    results = tmp_path / "repo/results/e"
    carry_classifier(trained[0] / "a", prepared, results / "classifier")
    cfg = ExperimentConfig()
    rec = scorer_record(cfg, results, "disk lost")
    assert rec["feature_network"] == "classifier" and rec["feature_sha256"] == trained[1]["sha256"]
    assert rec["classifier_origin"] == f"trained in {(trained[0] / 'a').resolve()}"
    assert rec["data_sha256"] == data_sha256(prepared) and rec["reference_sha256"] is None
    assert rec["new_classifier_reason"] == "disk lost" and "new_classifier_reason" not in scorer_record(cfg, results,
                                                                                                        None)
    # the digest is the weights file's, not what classifier.json claims
    info = json.loads((results / "classifier/classifier.json").read_text())
    (results / "classifier/classifier.json").write_text(json.dumps({**info, "sha256": "0" * 64}))
    assert feature_digest(cfg, results) == trained[1]["sha256"]
    # Inception: the weights file's digest, relative paths from the repository; a missing file named
    (tmp_path / "repo/weights.pth").write_bytes(b"inception weights")
    inception = cfg.replace(evaluate={"inception_weights": "weights.pth", "inception_sha256_prefix": ""})
    assert feature_digest(inception, results) == hashlib.sha256(b"inception weights").hexdigest()
    # a file other than the published one is refused unless the prefix is emptied on purpose
    with pytest.raises(ConfigError, match="evaluate.inception_weights: .*weights.pth has sha256 .*does not start "
                                          "with 6726825d"):
        feature_digest(cfg.replace(evaluate={"inception_weights": "weights.pth"}), results)
    assert scorer_record(inception, results, None)["feature_network"] == "inception"
    with pytest.raises(ConfigError, match="evaluate.inception_weights: .*missing.pth does not exist"):
        feature_digest(cfg.replace(evaluate={"inception_weights": "missing.pth"}), results)


def test_the_analysis_says_which_feature_spaces_its_blocks_scored_in():
    from pra.study_analysis import feature_space_text

    one = {"m1": {"feature_network": "classifier", "feature_sha256": "a" * 64},
           "m2": {"feature_network": "classifier", "feature_sha256": "a" * 64}}
    assert feature_space_text(one).startswith("Every block scored with one feature classifier (weights sha256 aaaa")
    two = {**one, "m3": {"feature_sha256": "b" * 64, "new_classifier_reason": "disk lost"}}
    text = feature_space_text(two)
    assert "2 different feature networks" in text and "bbbbbbbbbbbbbbbb: m3" in text and "m3: disk lost" in text
    text = feature_space_text({"m1": None, "m2": {"feature_sha256": "a" * 64}})
    assert "Block m1 did not record its feature network's digest" in text and "Every block" not in text
    assert "not known from the records" in text
    assert feature_space_text({"x1": None}) == ("Block x1 did not record its feature network's digest (recorded by "
                                                "an older version).")
    inception = {b: {"feature_network": "inception", "feature_sha256": "d" * 64} for b in ("m1", "m2")}
    assert feature_space_text(inception).startswith("Every block scored with one Inception network")


def _dry(tmp_path, evaluate, name=None):
    over = tmp_path / "carry.yaml"
    over.write_text(yaml.safe_dump({"evaluate": evaluate, **({"name": name} if name else {})}))
    return run(snakemake(tmp_path / "work", "-n", "all", "--quiet", "rules", "--configfile",
                         ROOT / "experiments/smoke.yaml", over), check=False)


def test_the_workflow_carries_a_given_classifier_and_rejects_a_missing_one(trained, tmp_path):
    out, _ = trained
    p = _dry(tmp_path, {"classifier_dir": str(tmp_path / "nowhere")})
    assert p.returncode != 0 and "evaluate.classifier_dir" in p.stdout + p.stderr
    assert "has no classifier.pt or classifier.json" in p.stdout + p.stderr
    p = _dry(tmp_path, {"classifier_dir": str(out / "a"), "inception_weights": str(out / "a/classifier.pt")})
    assert p.returncode != 0 and "config key 'evaluate.classifier_dir'" in p.stdout + p.stderr
    p = _dry(tmp_path, {"classifier_dir": str(out / "a")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "carry_classifier" in p.stdout + p.stderr and "train_classifier" not in p.stdout + p.stderr


def test_a_carried_classifier_stays_until_the_user_says_otherwise(trained, prepared, tmp_path):
    """A results folder whose classifier was carried is not silently retrained when the key is left out."""
    out, _ = trained
    own = tmp_path / "work/results/carried-dry/classifier"
    carry_classifier(out / "a", prepared, own)
    p = _dry(tmp_path, {}, name="carried-dry")
    assert p.returncode != 0, p.stdout + p.stderr
    assert "evaluate.classifier_dir: empty, but results/carried-dry/classifier holds a classifier carried from" \
        in p.stdout + p.stderr
    p = _dry(tmp_path, {"classifier_dir": str(own)}, name="carried-dry")
    assert p.returncode != 0 and "own classifier folder" in p.stdout + p.stderr
    p = _dry(tmp_path, {"classifier_dir": str(out / "a")}, name="carried-dry")
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_report_names_the_classifier_its_fids_were_measured_with(trained, prepared, tmp_path):
    from pra.report.build import classifier_identity

    out, info = trained
    text = classifier_identity(info)
    assert f"weights sha256 {info['sha256'][:16]}, trained here on {info['cpu_model']} ({info['cpu_kernels']})." in text
    assert "comparable in level only with FIDs measured by the same classifier" in text
    carried = carry_classifier(out / "a", prepared, tmp_path / "c")
    assert f"trained in {(out / 'a').resolve()} on " in classifier_identity(carried)
    assert classifier_identity(None) == "" and classifier_identity({"val_accuracy": 0.9}) == ""
