"""The rerun check: agreement within the measured seed spread of each run's arm, in one feature space."""
import json
import math

import numpy as np
import pytest

from conftest import run
from pra.reproduction import NotComparable, arm_of, check, check_scoring, spreads

SCORING = {"data": "embedded digits 32x32", "data_sha256": "d" * 64, "feature_network": "classifier",
           "feature_sha256": "a" * 64}
# two arms with 5 seeds each: pra's FIDs spread by about 5% (log sd 0.05), latent_tf's by about 20%
PRA = [7.0 * math.exp(x) for x in (-0.06, -0.02, 0.0, 0.03, 0.05)]
TF = [30.0 * math.exp(x) for x in (-0.25, -0.1, 0.0, 0.1, 0.25)]
FREE = [50.0 * math.exp(x) for x in (-1.0, -0.5, 0.0, 0.5, 1.0)]  # an ill-posed arm: left out of the pool
SPREAD = {"scoring": SCORING, "real_val_floor": {"fid": 0.2},
          "ablation/settle": {"pra": {"fid": 7.0, "fid_sd": 0.3, "fid_seeds": 5}},
          **{f"tiny-S/pra/base/s{i}": {"fid": v} for i, v in enumerate(PRA)},
          **{f"tiny-S/latent_tf/base/s{i}": {"fid": v} for i, v in enumerate(TF)},
          **{f"tiny-S/free_rollout/base/s{i}": {"fid": v} for i, v in enumerate(FREE)}}


def test_each_arm_has_its_own_log_sd_and_the_pool_leaves_out_ill_posed_arms():
    arms, pooled, n = spreads(SPREAD)
    assert arms["tiny-S/pra/base"]["sd"] == pytest.approx(np.std(np.log(PRA), ddof=1))
    assert arms["tiny-S/latent_tf/base"]["sd"] == pytest.approx(np.std(np.log(TF), ddof=1))
    want = math.sqrt((np.var(np.log(PRA), ddof=1) + np.var(np.log(TF), ddof=1)) / 2)
    assert n == 2 and pooled == pytest.approx(want)  # free_rollout's much larger spread is not pooled
    raw, _, _ = spreads({k: v for k, v in SPREAD.items() if k != "scoring"} | {
        f"tiny-S/pra/base/s{i}": {"fid": v, "class_accuracy": a} for i, (v, a) in enumerate(zip(PRA, [.9, .92, .94, .9, .92]))},
        "class_accuracy")
    assert raw["tiny-S/pra/base"]["sd"] == pytest.approx(np.std([.9, .92, .94, .9, .92], ddof=1))  # raw scale
    with pytest.raises(ValueError, match="several seeds per arm"):
        spreads({"ablation/x": {"a": {"fid": 1.0, "fid_sd": 0.3}}, "tiny-S/pra/base/s0": {"fid": 7.0}})
    assert arm_of("tiny-S/pra/method.t_min=1.0/s12") == "tiny-S/pra/method.t_min=1.0"
    assert arm_of("real_val_floor") is None and arm_of("ablation/settle") is None


def test_a_doubled_fid_fails_and_a_seed_like_change_passes_and_the_floor_is_never_judged():
    """The failure mode of a pooled absolute sd: arms of FID 30 with an sd of 2 made a tolerance of +-6 that a
    doubled FID of 4.5 passed. On the log scale with the run's own arm a doubling is far outside, a change
    like one seed's is inside, and the floor (no training seed) is shown but not judged."""
    arms, pooled, _ = spreads(SPREAD)
    committed = {"tiny-S/pra/base/s0": {"fid": 4.49}, "tiny-S/latent_tf/base/s0": {"fid": 22.3},
                 "tiny-S/pixel_noise/base/s0": {"fid": 7.7}, "real_val_floor": {"fid": 0.198}}
    rerun = {"tiny-S/pra/base/s0": {"fid": 8.98}, "tiny-S/latent_tf/base/s0": {"fid": 22.3 * 1.3},
             "tiny-S/pixel_noise/base/s0": {"fid": 7.7 * 1.1}, "real_val_floor": {"fid": 5.0}}
    rows = {r["run"]: r for r in check(committed, rerun, arms, pooled, k=3)}
    assert rows["tiny-S/pra/base/s0"]["within"] is False
    assert rows["tiny-S/pra/base/s0"]["difference"] == pytest.approx(math.log(2))
    assert rows["tiny-S/latent_tf/base/s0"]["within"] is True   # 1.3x inside latent_tf's own 20% spread ...
    rerun["tiny-S/pra/base/s0"] = {"fid": 4.49 * 1.3}
    again = {r["run"]: r for r in check(committed, rerun, arms, pooled)}
    assert again["tiny-S/pra/base/s0"]["within"] is False  # ... but not inside pra's 5%
    px = rows["tiny-S/pixel_noise/base/s0"]
    assert px["within"] is True and "pooled" in px["sd_source"] and px["sd"] == pytest.approx(pooled)
    floor = rows["real_val_floor"]
    assert floor["within"] is None and "not judged" in floor["why"]


def test_files_of_other_data_or_another_feature_network_are_refused():
    c, r, s = ("c", {"scoring": SCORING}), ("r", {"scoring": SCORING}), ("s", {"scoring": SCORING})
    assert check_scoring(c, r, s) == []
    other_clf = {**SCORING, "feature_sha256": "b" * 64}
    with pytest.raises(NotComparable, match="rerun .* another feature network.*evaluate.classifier_dir"):
        check_scoring(c, ("r", {"scoring": other_clf}), s)
    notes = check_scoring(c, r, ("s", {"scoring": other_clf}))  # a spread from another classifier: a note
    assert len(notes) == 1 and "spread" in notes[0]
    mnist = {**SCORING, "data": "embedded mnist 28x28", "data_sha256": "e" * 64}
    with pytest.raises(NotComparable, match="spread .* other data"):
        check_scoring(c, r, ("s", {"scoring": mnist}))
    with pytest.raises(NotComparable, match="rerun .* other data"):
        check_scoring(c, ("r", {"scoring": mnist}), s)
    notes = check_scoring(c, r, ("s", {}))  # an older report without the record: compared as given, and said
    assert notes == ["s has no scoring record (an older report): its data and feature space are taken as given"]


def test_cli_exit_status(tmp_path):
    (tmp_path / "spread.json").write_text(json.dumps(SPREAD))
    (tmp_path / "a.json").write_text(json.dumps({"scoring": SCORING, "tiny-S/pra/base/s0": {"fid": 7.0}}))
    (tmp_path / "b.json").write_text(json.dumps({"scoring": SCORING, "tiny-S/pra/base/s0": {"fid": 7.3}}))
    (tmp_path / "c.json").write_text(json.dumps({"scoring": SCORING, "tiny-S/pra/base/s0": {"fid": 9.5}}))
    other = {**SCORING, "feature_sha256": "b" * 64}
    (tmp_path / "d.json").write_text(json.dumps({"scoring": other, "tiny-S/pra/base/s0": {"fid": 7.0}}))
    cmd = ["python", "-m", "pra", "check-rerun", str(tmp_path / "a.json")]
    spread = ["--spread", str(tmp_path / "spread.json")]
    ok = run(cmd + [str(tmp_path / "b.json")] + spread, check=False)
    assert ok.returncode == 0 and "within the spread" in ok.stdout and "its arm's sd over 5 seeds" in ok.stdout
    bad = run(cmd + [str(tmp_path / "c.json")] + spread, check=False)
    assert bad.returncode == 1 and "OUTSIDE" in bad.stdout
    refused = run(cmd + [str(tmp_path / "d.json")] + spread, check=False)
    assert refused.returncode == 1 and "another feature network" in refused.stderr and "within" not in refused.stdout
