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


@pytest.mark.parametrize("deferred", ["off", "on"])
def test_a_nonfinite_loss_stops_the_run_naming_its_first_step_and_nothing_after_it_is_kept(tmp_path, prepared,
                                                                                            deferred):
    over = {"lr": 1e6, "grad_clip": 0.0, "warmup_steps": 0, "steps": 50, "log_every": 5, "ckpt_every": 3}
    out = tmp_path / deferred
    cfg = tiny_config(speed={**OFF, "deferred_checks": deferred}, train=over)
    with pytest.raises(FloatingPointError, match="non-finite loss") as err:
        train(cfg, scale="tiny-XS", method="latent_tf", seed=0, data_dir=prepared, out_dir=out, progress=False)
    assert not (out / "model.pt").exists()
    if (out / "state.pt").exists():  # a checkpoint from before the first non-finite loss, never after it
        state = torch.load(out / "state.pt", weights_only=False)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    msg = str(err.value)
    first = int(msg.split("at step ")[1].split()[0].rstrip(",;()"))
    # the plain check names the step it stopped at; the deferred one the same first step, read at most
    # log_every (or ckpt_every) steps later
    plain_cfg = tiny_config(speed=OFF, train=over)
    with pytest.raises(FloatingPointError) as ref:
        train(plain_cfg, scale="tiny-XS", method="latent_tf", seed=0, data_dir=prepared, out_dir=tmp_path / "ref",
              progress=False)
    assert first == int(str(ref.value).split("at step ")[1].split()[0].rstrip(",;()"))
    if deferred == "on":
        checked = int(msg.split("checked after step ")[1].rstrip(")"))
        assert first < checked <= first + min(over["log_every"], over["ckpt_every"])


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
