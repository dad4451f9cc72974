"""The training step's speed options (pra.speed: fused AdamW, the EMA as one multi-tensor kernel, deferred
host-side checks) on the CPU, where each is off unless set 'on': each computes what the plain step computes, and
deferred checks keep nothing computed after a non-finite loss."""
import json

import pytest
import torch

from conftest import tiny_config
from pra import speed as S
from pra.train import train

OFF = {"fused_optimizer": "off", "foreach_ema": "off", "deferred_checks": "off", "compile": "off"}


def _train(tmp_path, name, prepared, speed, **train_over):
    out = tmp_path / name
    cfg = tiny_config(speed={**OFF, **speed}, train=train_over)
    summary = train(cfg, scale="tiny-XS", method="pra", seed=0, data_dir=prepared, out_dir=out, progress=False)
    model = torch.load(out / "model.pt", weights_only=False)["model"]
    logs = [json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines()]
    return summary, model, logs


def test_the_options_resolve_off_on_the_cpu_and_on_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = tiny_config().speed
    assert S.training(auto, cpu) == {"compile": False, "compile_mode": "default", "fused_optimizer": False,
                                     "foreach_ema": False, "deferred_checks": False}
    assert all(v for k, v in S.training(auto, cuda).items() if k != "compile_mode")
    on = tiny_config(speed={"fused_optimizer": "on", "foreach_ema": "on", "deferred_checks": "on"}).speed
    assert S.fused_optimizer(on, cpu) and S.foreach_ema(on, cpu) and S.deferred_checks(on, cpu)


def test_foreach_ema_and_deferred_checks_change_nothing_and_fused_adamw_only_rounding(tmp_path, prepared):
    s0, plain, logs0 = _train(tmp_path, "plain", prepared, {})
    assert s0["speed"]["deferred_checks"] is False
    # the EMA as one kernel and the checks on the device: the same parameters, bit for bit
    s1, same, logs1 = _train(tmp_path, "ema_deferred", prepared, {"foreach_ema": "on", "deferred_checks": "on"})
    assert s1["speed"]["foreach_ema"] and s1["speed"]["deferred_checks"]
    assert plain.keys() == same.keys()
    for k in plain:
        assert torch.equal(plain[k], same[k]), k
    # the loss terms summed on the device in fp32 instead of on the host in fp64: equal up to rounding
    assert [r["step"] for r in logs0] == [r["step"] for r in logs1]
    for a, b in zip(logs0, logs1):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["lr"] == a["lr"]
    # fused AdamW: the same update up to floating-point rounding
    _, fused, _ = _train(tmp_path, "fused", prepared, {"fused_optimizer": "on"})
    for k in plain:
        torch.testing.assert_close(fused[k], plain[k], rtol=1e-4, atol=1e-5)


def _first_and_checked(msg: str) -> tuple[int, int | None]:
    first = int(msg.split("at step ")[1].split()[0].rstrip(",;()"))
    checked = int(msg.split("checked after step ")[1].rstrip(")")) if "checked after step " in msg else None
    return first, checked


# (ckpt_every, the 0-based step whose loss is made NaN, the checkpoints written before it) at log_every 5:
# the NaN between two log flushes with no checkpoint yet; after two checkpoints, read at the next flush;
# after a checkpoint, with the next checkpoint falling due (step 14) before the next flush (step 15)
NAN_CASES = {"between_flushes": (20, 7, None), "after_checkpoints": (6, 13, 12), "checkpoint_due_first": (7, 12, 7)}


@pytest.mark.parametrize("case", list(NAN_CASES))
@pytest.mark.parametrize("deferred", ["off", "on"])
def test_a_nonfinite_loss_stops_the_run_naming_its_first_step_and_nothing_after_it_is_kept(tmp_path, prepared,
                                                                                            monkeypatch, deferred,
                                                                                            case):
    from pra.step import TrainStep

    ckpt_every, nan_at, saved = NAN_CASES[case]
    log_every = 5
    assert ckpt_every > log_every and nan_at % log_every != log_every - 1  # off the log cadence
    steps = {"n": 0}
    loss = TrainStep.loss

    def nan_loss(self, x, labels, noise):  # the loss of step `nan_at` (and only it) is NaN
        out, logs = loss(self, x, labels, noise)
        steps["n"] += 1
        steps["ts"] = self
        return (out * float("nan") if steps["n"] == nan_at + 1 else out), logs

    monkeypatch.setattr(TrainStep, "loss", nan_loss)
    over = {"steps": 50, "log_every": log_every, "ckpt_every": ckpt_every}
    out = tmp_path / deferred
    cfg = tiny_config(speed={**OFF, "deferred_checks": deferred}, train=over)
    with pytest.raises(FloatingPointError, match=f"non-finite loss .*at step {nan_at}\\b") as err:
        train(cfg, scale="tiny-XS", method="latent_tf", seed=0, data_dir=prepared, out_dir=out, progress=False)
    first, checked = _first_and_checked(str(err.value))
    assert first == nan_at
    nxt = {"log": (nan_at // log_every + 1) * log_every, "ckpt": (nan_at // ckpt_every + 1) * ckpt_every}
    if deferred == "off":  # checked on the host at every step: stopped at the step itself
        assert checked is None and steps["n"] == nan_at + 1
    else:  # the stated window: read at the next log flush (train.log_every), or at a checkpoint due before it
        assert checked == min(nxt.values()) and steps["n"] == checked
        assert (checked == nxt["log"]) == (case != "checkpoint_due_first")
        assert "speed.deferred_checks: read every train.log_every steps" in str(err.value)
        # the steps after the NaN did update the weights to non-finite values: what a checkpoint would have held
        params = steps["ts"].model.state_dict().values()
        assert not all(torch.isfinite(v).all() for v in params if v.is_floating_point())
    assert not (out / "model.pt").exists()
    if saved is None:
        assert not (out / "state.pt").exists()
    else:  # the last checkpoint before the NaN, never one after it (not overwritten by non-finite weights)
        state = torch.load(out / "state.pt", weights_only=False)
        assert state["step"] == saved
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_resumed_step_runs_its_own_optimizer_implementation_not_the_saved_one():
    from pra.checkpoint import build_network
    from pra.model.network import Geometry
    from pra.step import TrainStep

    def step(fused):
        cfg = tiny_config(speed={**OFF, "fused_optimizer": fused})
        return TrainStep(cfg, build_network(cfg, "tiny-XS", "pra", Geometry(16, 1, 4, 10)), "pra",
                         torch.device("cpu"))

    fused, plain = step("on"), step("off")
    assert all(g["fused"] for g in fused.opt.param_groups)
    plain.load_state(fused.state())
    assert all(g["fused"] is None and g["foreach"] is None for g in plain.opt.param_groups)
    again = step("on")
    again.load_state(step("off").state())
    assert all(g["fused"] is True for g in again.opt.param_groups)
