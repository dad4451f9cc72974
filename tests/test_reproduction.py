"""The rerun check: agreement within the measured seed spread."""
import json

import pytest

from conftest import run
from pra.reproduction import check, pooled_sd

SPREAD = {"ablation/settle": {"pra": {"fid": 7.0, "fid_sd": 0.3, "fid_seeds": 5},
                              "latent_tf": {"fid": 30.0, "fid_sd": 0.4, "fid_seeds": 5}},
          "tiny-S/pra/base/s0": {"fid": 7.1}}


def test_pooled_sd_is_the_root_mean_square_of_the_variants():
    sd, n = pooled_sd(SPREAD)
    assert n == 2 and sd == pytest.approx((0.5 * (0.09 + 0.16)) ** 0.5)
    with pytest.raises(ValueError, match="2 or more seeds"):
        pooled_sd({"ablation/x": {"a": {"fid": 1.0}}})


def test_check_flags_only_runs_outside_the_tolerance():
    committed = {"a/s0": {"fid": 7.78}, "b/s0": {"fid": 8.28}, "real_val_floor": {"fid": 0.2},
                 "ablation/settle": {"pra": {"fid": 7.78}}}
    rerun = {"a/s0": {"fid": 7.29}, "b/s0": {"fid": 10.5}, "real_val_floor": {"fid": 0.2}}
    rows = {r["run"]: r for r in check(committed, rerun, sd=0.3, k=3)}
    assert set(rows) == {"a/s0", "b/s0", "real_val_floor"}
    assert rows["a/s0"]["within"] and not rows["b/s0"]["within"] and rows["real_val_floor"]["within"]


def test_cli_exit_status(tmp_path):
    (tmp_path / "spread.json").write_text(json.dumps(SPREAD))
    (tmp_path / "a.json").write_text(json.dumps({"r/s0": {"fid": 7.0}}))
    (tmp_path / "b.json").write_text(json.dumps({"r/s0": {"fid": 7.5}}))
    (tmp_path / "c.json").write_text(json.dumps({"r/s0": {"fid": 9.5}}))
    ok = run(["python", "-m", "pra", "check-rerun", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
              "--spread", str(tmp_path / "spread.json")], check=False)
    assert ok.returncode == 0 and "within the spread" in ok.stdout
    bad = run(["python", "-m", "pra", "check-rerun", str(tmp_path / "a.json"), str(tmp_path / "c.json"),
               "--spread", str(tmp_path / "spread.json")], check=False)
    assert bad.returncode == 1 and "OUTSIDE" in bad.stdout
