"""The fast paths (pra.speed): bf16 sampling weights, the head ODE object and its CUDA graph, compiled training
modules, the speed section's plumbing; and the GPU benchmark's logic on the CPU."""
import json

import pytest
import torch

from conftest import ROOT, run, snakemake, tiny_config
from pra import speed as S
from pra.config import ConfigError, SpeedConfig
from pra.flow import make_flow
from pra.model.network import Geometry, PRANetwork
from pra.model.scales import get_scale
from pra.rollout import HeadODE, SamplerSettings, rollout
from pra.runtime import generator

GEOM = Geometry(resolution=16, channels=1, patch_size=4, num_classes=10)
CUDA = torch.cuda.is_available()


def make(method="pra", seed=0):
    cfg = tiny_config()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = PRANetwork(get_scale("tiny-XS"), cfg.model, GEOM, method).eval()
        for p in net.head.parameters():  # a non-trivial head (it starts at zero output)
            p.data.normal_(0, 0.05)
    return cfg, net, make_flow(cfg.model, net.latent)


SETTINGS = SamplerSettings(ode_steps=4, cfg_scale=2.5, cfg_schedule="linear")


def test_explicit_eager_ode_is_the_default_path_bit_for_bit():
    _, net, flow = make()
    y = torch.tensor([1, 2, 3, 4])
    a = rollout(net, flow, y, SETTINGS, generator(3))
    b = rollout(net, flow, y, SETTINGS, generator(3), ode=HeadODE(flow, net.head, SETTINGS))
    assert torch.equal(a.patches, b.patches) and torch.equal(a.states, b.states)


def test_a_prefix_of_positions_is_the_prefix_of_the_whole_rollout():
    _, net, flow = make()
    y = torch.tensor([1, 2, 3])
    whole = rollout(net, flow, y, SETTINGS, generator(3))
    part = rollout(net, flow, y, SETTINGS, generator(3), positions=5)
    assert part.patches.shape[1] == 5
    assert torch.equal(part.patches, whole.patches[:, :5])


@pytest.mark.parametrize("method", ["pra", "pixel_tf"])
def test_bf16_weights_sample_within_tolerance_of_fp32_and_far_inside_the_seed_spread(method):
    """The fast path's precision on a tiny model: same noise, bf16 weights and an fp32 ODE state. Tolerance:
    0.05 max abs in [-1, 1] pixels (1.3% of the range, under 7 of 255 grey levels), and the mean distance under
    a tenth of the distance between two seeds' samples."""
    _, net, flow = make(method)
    y = torch.arange(8) % 10
    ref = rollout(net, flow, y, SETTINGS, generator(3))
    net16 = make(method)[1].to(torch.bfloat16)
    fast = rollout(net16, flow, y, SETTINGS, generator(3))
    assert fast.patches.dtype == torch.bfloat16 and fast.states.dtype == torch.float32  # fp32 ODE state
    diff = (fast.patches.float() - ref.patches).abs()
    other = rollout(net, flow, y, SETTINGS, generator(4))
    spread = (other.patches - ref.patches).abs().mean()
    assert diff.max() <= 0.05, diff.max()
    assert diff.mean() < 0.1 * spread, (diff.mean(), spread)


def test_bf16_cached_and_recomputed_samples_agree():
    _, net, flow = make()
    net = net.to(torch.bfloat16)
    y = torch.tensor([1, 2, 3])
    a = rollout(net, flow, y, SETTINGS, generator(5), use_cache=True)
    b = rollout(net, flow, y, SETTINGS, generator(5), use_cache=False)
    assert (a.patches.float() - b.patches.float()).abs().max() <= 0.05


def test_graphed_head_ode_needs_cuda_tensors():
    from pra.head_graph import GraphedHeadODE

    _, net, flow = make()
    ode = GraphedHeadODE(flow, net.head, SETTINGS)
    with pytest.raises(RuntimeError, match="CUDA"):
        rollout(net, flow, torch.tensor([1]), SETTINGS, generator(0), ode=ode)


def test_a_graph_is_never_replayed_after_the_head_moved_or_changed_dtype():
    """The guard a replay runs first, checked on the CPU with the fingerprint a capture would record: an
    in-place update of the values keeps the graphs valid; a dtype change or replaced tensors do not."""
    from pra.head_graph import GraphedHeadODE, capture_key, parameter_fingerprint

    _, net, flow = make()
    ode = GraphedHeadODE(flow, net.head, SETTINGS)
    ode.fingerprint = parameter_fingerprint(net.head)  # as after a capture
    ode.check_parameters()
    with torch.no_grad():
        for p in net.head.parameters():
            p.add_(0.01)  # in place: same addresses
    ode.check_parameters()
    net.head.load_state_dict({k: v.clone() for k, v in net.head.state_dict().items()}, assign=True)
    with pytest.raises(RuntimeError, match="build a new GraphedHeadODE"):
        ode.check_parameters()
    ode.fingerprint = parameter_fingerprint(net.head)
    net.head.to(torch.float64)
    with pytest.raises(RuntimeError, match="re-typed"):
        rollout(net, flow, torch.tensor([1]), SETTINGS, generator(0), ode=ode)
    # the capture plan: one graph per rows, guidance on/off and dtypes
    c, u, y = torch.zeros(4, 8), torch.zeros(4, 8), torch.zeros(4, 2)
    assert capture_key(c, u, 3.0, y) != capture_key(c, u, 1.0, y) == capture_key(c, None, 3.0, y)
    assert capture_key(c, u, 3.0, y) != capture_key(c[:2], u[:2], 3.0, y[:2])
    assert capture_key(c, u, 3.0, y) != capture_key(c.double(), u.double(), 3.0, y)


def test_the_capture_logic_on_the_cpu_captures_once_per_key_and_replays_every_position():
    """GraphedHeadODE with the CPU backend (pra.head_graph.RecordedSolve): the rollout equals the eager one bit for
    bit; one capture per (rows, guided, dtypes), reused at every later position and batch; every position one
    replay; a returned output is a copy, not the static buffer the next replay overwrites."""
    from pra.head_graph import GraphedHeadODE, RecordedSolve

    _, net, flow = make()
    y = torch.tensor([1, 2, 3, 4])
    a = rollout(net, flow, y, SETTINGS, generator(3))
    ode = GraphedHeadODE(flow, net.head, SETTINGS, backend=RecordedSolve())
    b = rollout(net, flow, y, SETTINGS, generator(3), ode=ode)
    assert torch.equal(a.patches, b.patches)
    assert len(ode.graphs) == 2  # the ramp's first position is unguided (scale 1), the others guided
    replays = sum(c.graph.replays for c in ode.graphs.values())
    assert replays == GEOM.num_tokens
    rollout(net, flow, torch.tensor([5, 6, 7, 8]), SETTINGS, generator(4), ode=ode)  # same rows: no new capture
    assert len(ode.graphs) == 2 and sum(c.graph.replays for c in ode.graphs.values()) == 2 * GEOM.num_tokens
    rollout(net, flow, torch.tensor([1, 2]), SETTINGS, generator(4), ode=ode)  # other rows: their own graphs
    assert len(ode.graphs) == 4
    # outputs are copies: a later replay does not change an output already returned
    key, c = next(iter(ode.graphs.items()))
    rows = key[0]
    cond = torch.randn(rows, c.cond.shape[1], generator=generator(1))
    y0 = torch.randn(rows, c.y0.shape[1], generator=generator(2))
    t0 = torch.zeros_like(c.t0)
    first = ode(cond, None, 1.0, y0, t0)
    kept = first.clone()
    ode(cond + 1, None, 1.0, y0 + 1, t0)
    assert torch.equal(first, kept) and not torch.equal(c.out, kept)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_graphed_head_ode_replays_the_eager_solve():
    from pra.head_graph import GraphedHeadODE

    _, net, flow = make()
    dev = torch.device("cuda")
    net = net.to(dev)
    y = torch.arange(6, device=dev)
    a = rollout(net, flow, y, SETTINGS, generator(3, dev))
    ode = GraphedHeadODE(flow, net.head, SETTINGS)
    b = rollout(net, flow, y, SETTINGS, generator(3, dev), ode=ode)
    assert len(ode.graphs) == 2  # unguided (the ramp's first position, scale 1) and guided
    torch.testing.assert_close(b.patches, a.patches, atol=1e-5, rtol=0)


def test_speed_settings_resolve_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = SpeedConfig()
    assert not S.compiles(auto, cpu) and S.compiles(auto, cuda)
    assert S.compiles(SpeedConfig(compile="on"), cpu) and not S.compiles(SpeedConfig(compile="off"), cuda)
    assert S.sampling_dtype(auto, cpu) == torch.float32 and S.sampling_dtype(auto, cuda) == torch.bfloat16
    assert S.sampling_dtype(SpeedConfig(sample_precision="fp32"), cuda) == torch.float32
    assert S.sampling_dtype(SpeedConfig(sample_precision="bf16"), cpu) == torch.bfloat16
    assert not S.uses_cuda_graphs(auto, cpu) and S.uses_cuda_graphs(auto, cuda)
    assert not S.uses_cuda_graphs(SpeedConfig(cuda_graphs="off"), cuda)
    assert type(S.head_ode(None, make()[1], SETTINGS, auto, cpu)) is HeadODE


def test_speed_json_overrides_the_config_and_is_validated():
    from pra.__main__ import experiment_config, parser

    cfg = tiny_config()
    args = parser().parse_args(["sample", "--config-json", cfg.subset_json("device", "sample"), "--model", "m.pt", "--out", "o",
                                "--speed-json", tiny_config().replace(speed={"compile": "off", "sample_precision": "bf16"})
                                .subset_json("speed")])  # what the rules pass
    got = experiment_config(args)
    assert got.speed.sample_precision == "bf16" and got.speed.compile == "off" and got.speed.cuda_graphs == "auto"
    args.speed_json = json.dumps({"speed": {"sample_precision": "fp16"}})
    with pytest.raises(ConfigError, match="speed.sample_precision"):
        experiment_config(args)


def test_compiled_modules_keep_the_state_dict_names():
    _, net, _ = make()
    keys = list(net.state_dict())
    assert S.compile_modules(net) == ["trunk", "head", "encoder", "decoder"]
    assert list(net.state_dict()) == keys


@pytest.mark.slow  # inductor's compile workers, about a minute
def test_compiled_training_step_matches_eager():
    """torch.compile (inductor, here on the CPU) of the modules: same loss and gradients up to rounding."""
    from pra.noise import Noise
    from pra.objective import Objective

    cfg = tiny_config()
    x = torch.rand(4, GEOM.num_tokens, GEOM.patch_dim, generator=generator(0)) * 2 - 1
    y = torch.tensor([1, 2, 3, 4])
    out = {}
    for compiled in (False, True):
        _, net, _ = make()
        net.train()
        if compiled:
            S.compile_modules(net)
        loss, _ = Objective("pra", cfg.model, cfg.method, True)(net, x, y, Noise(generator(3)))
        loss.backward()
        out[compiled] = (loss.detach(), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[True][1], out[False][1], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # the whole GPU benchmark's logic, with inductor compiling the 'fast' mode: about a minute
def test_gpu_benchmark_logic_runs_on_the_cpu(tmp_path):
    """Every section of the GPU benchmark on tiny shapes (CPU: no CUDA graphs, no memory, no peak): it completes
    without errors and writes both files; training times the job's iteration in each mode with that mode's
    speed options; sampling times whole images only, repeated, with the eager sampler at an equal batch; the
    eager-vs-'graph' pair (both eager here) is identical."""
    from pra.bench.gpu import run_gpu_bench

    cfg = tiny_config()
    (tmp_path / "out").mkdir()  # a gpu.json of the earlier format: never kept
    (tmp_path / "out" / "gpu.json").write_text(json.dumps({"machine": {"device": "", "torch": torch.__version__},
                                                           "training": [{"scale": "old"}], "sampling": [{"scale": "old"}]}))
    kw = dict(device="cpu", scales=("tiny-XS",), batch=4, reps=2, window=3, modes=("eager", "fast"),
              sample_scales=("tiny-XS",), sample_batches=(4, 10), eager_batch=4, agreement_batch=2, eager_tokens=4,
              geometry=Geometry(16, 3, 4, 10), settings=SamplerSettings(ode_steps=3, cfg_scale=3.0),
              work_dir=tmp_path, keep=True)
    r = run_gpu_bench(cfg, tmp_path / "out", sections=("training", "sampling"), **kw)
    assert r["errors"] == [] and "kept_from_earlier_run" not in r
    r = run_gpu_bench(cfg, tmp_path / "out", sections=("agreement",), **kw)  # the others kept from the first call
    assert r["errors"] == [] and r["kept_from_earlier_run"]["training"] == ["tiny-XS"]
    on_disk = json.loads((tmp_path / "out" / "gpu.json").read_text())
    t = on_disk["training"][0]
    assert t["window"] == 3 and t["reps"] == 2 and set(t["modes"]) == {"eager", "fast"}
    assert t["modes"]["fast"]["speed"]["deferred_checks"] == "on" and t["modes"]["eager"]["compiled"] is False
    for mode in t["modes"].values():
        assert 0 < mode["step_seconds_min"]["pra"] <= mode["step_seconds"]["pra"] <= mode["step_seconds_max"]["pra"]
    assert t["flops_per_step"]["pra"] > t["flops_per_step"]["latent_tf"] > 0
    s = on_disk["sampling"][0]
    assert [f["batch"] for f in s["fast"]] == [4, 10] and all(len(f["seconds"]) == 2 for f in s["fast"])
    assert s["eager_fp32"]["batch"] == 4 and s["same_batch_speedup"] > 0
    # where one batch's time goes: the head ODE, the trunk step and the decoder each take a measured share of the
    # rollout, the head ODE the largest (3 Heun steps with guidance: several head passes per position against one trunk step)
    pr = s["profile"]
    assert pr["batch"] == 4 and pr["time"] == "cpu" and "error" not in pr
    sh = pr["shares"]
    parts = [sh[k] for k in ("head ODE", "trunk step", "decode to pixels")]
    assert all(0 < v < 1 for v in parts) and sum(parts) <= 1.0 and sh["other"] == pytest.approx(1 - sum(parts))
    assert sh["head ODE"] == max(parts)
    assert "Where the sampling time goes" in (tmp_path / "out" / "gpu.md").read_text()
    a = on_disk["agreement"][0]
    assert a["graph_vs_eager_fp32"]["max_abs"] == 0.0
    assert 0 < a["bf16_fast_vs_fp32"]["mean_abs"] < a["fp32_seed_vs_seed"]["mean_abs"]
    md = (tmp_path / "out" / "gpu.md").read_text()
    assert "PRA/TF" in md and "Agreement" in md and "(extrap.)" not in md
    assert "at the configured batch 10: an FID-50K sample takes" in md


def test_the_sampling_profile_leaves_the_network_as_it_was():
    """profile_sampling labels the trunk step and the decoder by instance attributes for one profiled rollout;
    afterwards the network's own methods run again and a rollout draws the same samples as before."""
    from pra.bench.gpu import profile_sampling, sampling_net
    from pra.rollout import rollout
    from pra.runtime import generator

    dev = torch.device("cpu")
    net, flow = sampling_net(tiny_config(), "tiny-XS", dev, Geometry(16, 3, 4, 10), torch.float32)
    settings = SamplerSettings(ode_steps=2, cfg_scale=2.0)
    labels = torch.arange(3)
    before = rollout(net, flow, labels, settings, generator(1, dev)).patches
    profile_sampling(net, flow, settings, 3, dev)
    assert "step" not in vars(net.trunk) and "to_pixels" not in vars(net)
    torch.testing.assert_close(rollout(net, flow, labels, settings, generator(1, dev)).patches, before, rtol=0, atol=0)


def test_estimate_uses_the_measured_mfu_where_the_benchmark_has_the_scale():
    from pra.estimate import estimate

    cfg = tiny_config(scales=["tiny-XS", "tiny-S"])
    bench = {"machine": {"device": "NVIDIA H100", "nominal_bf16_dense_flops": 989.4e12},
             "geometry": {"resolution": 16, "patch_size": 4, "tokens": 16},  # tiny_config's geometry
             "training": [{"scale": "tiny-XS", "batch": 64, "modes": {"compiled": {"mfu": {"pra": 0.5, "latent_tf": 0.6}}}}]}
    r = estimate(cfg, 10, bench=bench)
    xs, s = r["scales"]["tiny-XS"]["methods"]["pra"], r["scales"]["tiny-S"]["methods"]["pra"]
    assert (xs["mfu"], xs["mfu_kind"], xs["peak_tflops"]) == (0.5, "measured", 989.4)
    # the benchmarked card, at its lowest measured MFU (never above a measurement)
    assert (s["mfu"], s["mfu_kind"], s["peak_tflops"]) == (0.5, "lowest measured", 989.4)
    assert s["mfu_source"].startswith("lowest measured at this geometry, tiny-XS's (")
    plain = estimate(cfg, 10)["scales"]["tiny-XS"]["methods"]["pra"]
    assert (plain["mfu"], plain["mfu_kind"], plain["peak_tflops"]) == (0.4, "assumed", 312.0)
    assert xs["gpu_hours_compute"] == pytest.approx(xs["total_flops"] / (989.4e12 * 0.5) / 3600)
    assert xs["gpu_hours_allreduce"] == 0 and xs["gpu_hours"] == xs["gpu_hours_compute"]  # one CPU/GPU per job
    forced = estimate(cfg, 10, mfu=0.3, bench=bench)["scales"]["tiny-XS"]["methods"]["pra"]
    assert (forced["mfu"], forced["mfu_kind"], forced["peak_tflops"]) == (0.3, "assumed", 312.0)
    # a peak given names another card: the benchmark's MFUs (of its own card) are not carried over to it
    other = estimate(cfg, 10, peak_tflops=312.0, bench=bench)
    a100 = other["scales"]["tiny-XS"]["methods"]["pra"]
    assert (a100["mfu"], a100["mfu_kind"], a100["peak_tflops"]) == (0.4, "assumed", 312.0)
    assert a100["mfu_source"] == "assumed (the peak given names another card than the benchmark's)"
    assert other["assumptions"]["note"].startswith("peak: 312 TFLOP/s, given;") and "measured" not in other
    # the mode a CUDA job runs ('fast') is read before 'compiled'; each scale names the batch it was timed at
    bench["training"] = [{"scale": "tiny-XS", "batch": 32, "modes": {"compiled": {"mfu": {"pra": 0.5}},
                                                                    "fast": {"mfu": {"pra": 0.55}}}},
                         {"scale": "tiny-S", "batch": 8, "modes": {"compiled": {"mfu": {"pra": 0.45}}}}]
    r = estimate(cfg, 10, bench=bench)
    assert r["scales"]["tiny-XS"]["methods"]["pra"]["mfu"] == 0.55
    assert r["scales"]["tiny-S"]["methods"]["pra"]["mfu"] == 0.45
    assert (r["scales"]["tiny-XS"]["benchmark_per_gpu_batch"], r["scales"]["tiny-S"]["benchmark_per_gpu_batch"]) == (32, 8)
    # an experiment whose jobs run without the speed options is estimated at the 'compiled' mode's MFU
    plain_speed = estimate(cfg.replace(speed={"deferred_checks": "off"}), 10, bench=bench)
    assert plain_speed["benchmark_mode"] == "compiled"
    assert plain_speed["scales"]["tiny-XS"]["methods"]["pra"]["mfu"] == 0.5


def test_the_allreduce_model_and_the_attention_flops():
    import torch

    from pra.estimate import allreduce_seconds, estimate
    from pra.flops import counter

    # ring all-reduce: 2 (G - 1) / G x 4 bytes x params per GPU, at the inter-node bandwidth across nodes
    assert allreduce_seconds(10 ** 9, 8, 1, intra_gbps=100, inter_gbps=10) == pytest.approx(2 * 7 / 8 * 4 * 1e9 / 100e9)
    assert allreduce_seconds(10 ** 9, 32, 4, intra_gbps=100, inter_gbps=10) == pytest.approx(2 * 31 / 32 * 4 / 10)
    assert allreduce_seconds(10 ** 9, 1, 1, intra_gbps=100, inter_gbps=10) == 0.0
    cfg = tiny_config(resources={"train_gpus": 4, "train_nodes": 2})
    m = estimate(cfg, 10)["scales"]["tiny-XS"]
    e = m["methods"]["pra"]
    assert m["per_gpu_batch"] == cfg.train.batch_size / 8
    assert e["gpu_hours_allreduce"] == pytest.approx(m["allreduce_seconds_per_step"] * cfg.train.steps * 8 / 3600)
    assert e["wall_hours"] == pytest.approx(e["gpu_hours"] / 8)
    # attention on the CPU is counted with torch's SDPA formula: 4 B H L S d forward, 2.5x that backward
    q = torch.randn(2, 4, 16, 8, requires_grad=True)
    with counter() as fc:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    assert fc.get_total_flops() == 4 * 2 * 4 * 16 * 16 * 8 * 3.5


def test_rules_pass_the_speed_section_outside_the_rerun_params(tmp_path):
    p = run(snakemake(tmp_path, "-n", "-p", "all", "--configfile", ROOT / "config/config.yaml"))
    out = p.stdout + p.stderr
    train = [ln for ln in out.splitlines() if "-m pra train " in ln]
    assert train and all('--speed-json "$PRA_SPEED_JSON"' in ln for ln in train), train[:1]
    assert any("-m pra sample " in ln and '--speed-json "$PRA_SPEED_JSON"' in ln for ln in out.splitlines())
    assert not (tmp_path / "results").exists()
