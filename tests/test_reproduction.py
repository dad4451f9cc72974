"""The rerun check: agreement within the measured seed spread, in one feature space, with known error rates."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import run
from pra.reproduction import NotComparable, arm_of, check, check_scoring, spreads

SCORING = {"data": "embedded digits 32x32", "data_sha256": "d" * 64, "feature_network": "classifier",
           "feature_sha256": "a" * 64}


def _spread(rng, arms: dict, seeds: int) -> dict:
    """arm -> (median FID, sd of log FID): per-run entries of `seeds` seeds each, as a report writes them."""
    out = {"scoring": SCORING, "real_val_floor": {"fid": 0.2}}
    for arm, (med, sd) in arms.items():
        for s in range(seeds):
            out[f"{arm}/s{s}"] = {"fid": float(med * math.exp(rng.normal(0, sd)))}
    return out


ARMS = {"tiny-S/pra/base": (5.0, 0.1), "tiny-S/latent_tf/base": (20.0, 0.1), "tiny-S/pixel_noise/base": (8.0, 0.1),
        "tiny-S/free_rollout/base": (25.0, 0.8)}  # an ill-posed arm with a much larger spread


def test_spreads_per_arm_pooled_over_well_posed_arms_and_without_non_positive_values():
    fixed = {f"tiny-S/pra/base/s{i}": {"fid": v, "kid": k} for i, (v, k) in
             enumerate(zip([7.0, 7.4, 6.8, 7.1], [1.0, -0.2, 1.3, 1.1]))}
    fixed |= {f"tiny-S/latent_tf/base/s{i}": {"fid": v} for i, v in enumerate([30.0, 24.0])}
    fixed |= {f"tiny-S/free_rollout/base/s{i}": {"fid": v} for i, v in enumerate([50.0, 90.0, 20.0])}
    arms, pooled, notes = spreads(fixed)
    assert arms["tiny-S/pra/base"]["sd"] == pytest.approx(np.std(np.log([7.0, 7.4, 6.8, 7.1]), ddof=1))
    want = math.sqrt((3 * np.var(np.log([7.0, 7.4, 6.8, 7.1]), ddof=1) + np.var(np.log([30.0, 24.0]), ddof=1)) / 4)
    assert (pooled["sd"], pooled["df"], pooled["arms"]) == (pytest.approx(want), 4, 2)  # free_rollout not pooled
    kid, _, kid_notes = spreads(fixed, "kid")  # a negative KID has no log: left out, and said so
    assert kid["tiny-S/pra/base"]["seeds"] == 3 and np.isfinite(kid["tiny-S/pra/base"]["sd"])
    assert kid_notes == ["tiny-S/pra/base: 1 non-positive kid value(s) of the spread left out (no log)"] and not notes
    raw, _, _ = spreads({f"tiny-S/pra/base/s{i}": {"class_accuracy": a} for i, a in enumerate([.9, .92, .94])},
                        "class_accuracy")
    assert raw["tiny-S/pra/base"]["sd"] == pytest.approx(np.std([.9, .92, .94], ddof=1))  # raw scale
    with pytest.raises(ValueError, match="several seeds per arm"):
        spreads({"ablation/x": {"a": {"fid": 1.0, "fid_sd": 0.3}}, "tiny-S/pra/base/s0": {"fid": 7.0}})
    assert arm_of("tiny-S/pra/method.t_min=1.0/s12") == "tiny-S/pra/method.t_min=1.0"
    assert arm_of("real_val_floor") is None and arm_of("ablation/settle") is None and arm_of("a/b/c/sx") is None


def test_a_rerun_as_far_as_another_seed_fails_at_most_at_alpha_and_real_changes_are_caught():
    """Known answers by simulation. Null: the rerun of each run is an independent seed draw (the worst a faithful
    rerun can be): the check fails in about alpha of the trials, not more. Alternatives: one run's FID doubled is
    caught every time; a 1.2x shift of all runs (each inside its own bound) is caught by the shift test in most
    trials; an identical rerun never fails."""
    rng = np.random.default_rng(0)
    trials, fails, shifted, doubled = 300, 0, 0, 0
    well = {k: v for k, v in ARMS.items() if "free" not in k}
    for _ in range(trials):
        arms, pooled, _ = spreads(_spread(rng, ARMS, seeds=5))
        committed = _spread(rng, well, seeds=2)
        rerun = _spread(rng, well, seeds=2)
        res = check(committed, rerun, arms, pooled)
        fails += not all(r["within"] for r in res["rows"] if r["within"] is not None) or res["shift"]["shifted"]
        moved = {k: ({"fid": v["fid"] * 1.2} if arm_of(k) else v) for k, v in committed.items()}
        shifted += check(committed, moved, arms, pooled)["shift"]["shifted"]
        one = dict(committed, **{"tiny-S/pra/base/s0": {"fid": committed["tiny-S/pra/base/s0"]["fid"] * 2}})
        doubled += not next(r for r in check(committed, one, arms, pooled)["rows"]
                            if r["run"] == "tiny-S/pra/base/s0")["within"]
        same = check(committed, committed, arms, pooled)
        assert all(r["within"] for r in same["rows"] if r["within"] is not None) and not same["shift"]["shifted"]
    rate = fails / trials
    assert rate <= 0.05 + 2.6 * math.sqrt(0.05 * 0.95 / trials), rate  # alpha, within the simulation's error
    assert doubled / trials > 0.95 and shifted / trials > 0.8, (doubled, shifted)


def test_each_run_is_held_to_its_arm_with_enough_seeds_else_the_pool_and_the_floor_is_not_judged():
    arms, pooled, _ = spreads(_spread(np.random.default_rng(1), ARMS, seeds=10))
    committed = {"tiny-S/pra/base/s0": {"fid": 4.49}, "tiny-S/pixel_noise/method.x=1/s0": {"fid": 7.7},
                 "tiny-S/free_rollout/base/s0": {"fid": 25.0}, "real_val_floor": {"fid": 0.198}}
    rerun = {"tiny-S/pra/base/s0": {"fid": 4.6}, "tiny-S/pixel_noise/method.x=1/s0": {"fid": 7.9},
             "tiny-S/free_rollout/base/s0": {"fid": 60.0}, "real_val_floor": {"fid": 5.0}}
    res = check(committed, rerun, arms, pooled)
    rows = {r["run"]: r for r in res["rows"]}
    judged = [r for r in res["rows"] if r["within"] is not None]
    pra = rows["tiny-S/pra/base/s0"]
    assert pra["sd"] == arms["tiny-S/pra/base"]["sd"] and pra["sd_source"] == "its arm's sd over 10 seeds"
    q = stats.t.ppf(1 - 0.05 / (4 * len(judged)), 9)
    assert pra["tolerance"] == pytest.approx(q * math.sqrt(2) * pra["sd"])
    assert pra["difference"] == pytest.approx(math.log(4.6 / 4.49))
    other = rows["tiny-S/pixel_noise/method.x=1/s0"]
    assert other["sd"] == pooled["sd"] and "the spread lacks its arm" in other["sd_source"]
    assert rows["tiny-S/free_rollout/base/s0"]["within"] is True  # its own wide spread: 2.4x is inside
    assert rows["real_val_floor"]["within"] is None and "not judged" in rows["real_val_floor"]["why"]
    few, pooled_few, _ = spreads(_spread(np.random.default_rng(2), ARMS, seeds=3))
    r3 = next(r for r in check(committed, rerun, few, pooled_few)["rows"] if r["run"] == "tiny-S/pra/base/s0")
    assert r3["sd"] == pooled_few["sd"] and r3["sd_source"] == "the pooled sd of 3 arms (its arm has 3 seeds)"
    assert r3["df"] == pooled_few["df"] == 6


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
    # an older committed file without the record: the rerun and the spread are still compared with each other
    with pytest.raises(NotComparable, match="spread .* other data"):
        check_scoring(("c", {}), r, ("s", {"scoring": mnist}))
    notes = check_scoring(c, r, ("s", {}))
    assert notes == ["s has no scoring record (an older report): its data and feature space are taken as given"]


def test_cli_exit_status(tmp_path):
    """0: agrees; 1: a run outside its bound or a shared shift; 2: not comparable."""
    spread = _spread(np.random.default_rng(3), ARMS, seeds=5)
    (tmp_path / "spread.json").write_text(json.dumps(spread))
    runs = {f"tiny-S/pra/base/s{i}": {"fid": v} for i, v in enumerate([5.0, 5.3, 4.8])}
    files = {"a": runs, "b": {k: {"fid": v["fid"] * 1.02} for k, v in runs.items()},
             "c": dict(runs, **{"tiny-S/pra/base/s0": {"fid": 15.0}})}
    for name, rows in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"scoring": SCORING, **rows}))
    other = {**SCORING, "feature_sha256": "b" * 64}
    (tmp_path / "d.json").write_text(json.dumps({"scoring": other, **runs}))
    cmd = ["python", "-m", "pra", "check-rerun", str(tmp_path / "a.json")]
    spread_arg = ["--spread", str(tmp_path / "spread.json")]
    ok = run(cmd + [str(tmp_path / "b.json")] + spread_arg, check=False)
    assert ok.returncode == 0 and "within the spread" in ok.stdout and "no shared shift" in ok.stdout, ok.stdout
    bad = run(cmd + [str(tmp_path / "c.json")] + spread_arg, check=False)
    assert bad.returncode == 1 and "OUTSIDE" in bad.stdout
    refused = run(cmd + [str(tmp_path / "d.json")] + spread_arg, check=False)
    assert refused.returncode == 2 and "another feature network" in refused.stderr and not refused.stdout
