"""`python -m pra bench-precision` on a tiny trained model (CPU, where bf16 weights run too): the null reads
exactly 0, bf16 changes the samples, every reading has its seed-spread counterpart, and the report files exist."""
import json

import pytest

from conftest import tiny_config
from pra.bench.precision import compare_precisions, figure, markdown
from pra.evaluate.classifier import train_classifier
from pra.train import train


@pytest.fixture(scope="module")
def trained_and_classifier(tmp_path_factory, prepared):
    out = tmp_path_factory.mktemp("precision")
    train(tiny_config(train={"steps": 40}), scale="tiny-XS", method="pra", seed=0, data_dir=prepared,
          out_dir=out / "run", progress=False)
    train_classifier(prepared, out / "clf", epochs=2, seed=0)
    return out / "run" / "model.pt", out / "clf" / "classifier.pt"


def test_bf16_against_fp32_beside_the_seed_spread_with_an_exact_null(tmp_path, trained_and_classifier):
    model, clf = trained_and_classifier
    r = compare_precisions(model, classifier=clf, per_class=3, cfg_scale=3.0, batch_size=15, device="cpu")
    assert r["samples"] == 30 and r["sampling"]["cfg_scale"] == 3.0
    assert r["fp32_repeat"]["max_abs"] == 0.0 and set(r["per_position"]["fp32_repeat"]) == {0.0}
    assert r["bf16_vs_fp32"]["mean_abs"] > 0 and r["fp32_seed_vs_seed"]["mean_abs"] > 0
    pp = r["per_position"]
    assert len(pp["bf16_vs_fp32"]) == len(pp["fp32_seed_vs_seed"]) == len(pp["ink"]) == r["tokens"] == 16
    assert 0 <= r["prediction_agreement_with_A"]["A_bf16"] <= 1
    assert set(r["class_accuracy"]) == {"A_fp32", "A_bf16", "B_fp32"}
    assert r["frechet_to_A"]["B_fp32"] > 0
    md = markdown(r)
    assert "A vs A (the null" in md and md.count("\n| ") >= 16 + 3
    figure(r, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
    json.dumps(r)  # the record is plain JSON
