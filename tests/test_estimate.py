"""`python -m pra estimate` (pra.estimate) reading a GPU benchmark: an MFU counts as measured only for a scale the
benchmark timed at the experiment's geometry, its provenance (benchmark format, mode read) is stated, a method
it did not time takes PRA's MFU as an assumption, the assumptions note says per line what is measured; and the
chain benchmark -> estimate, end to end on the CPU."""
import json
from types import SimpleNamespace

import pytest

from conftest import tiny_config
from pra.estimate import estimate, estimate_job
from pra.model.network import Geometry

H100 = {"device": "NVIDIA H100", "nominal_bf16_dense_flops": 989.4e12}
TINY = {"resolution": 16, "channels": 1, "patch_size": 4, "tokens": 16}  # tiny_config's geometry
IMAGENET = {"resolution": 256, "channels": 3, "patch_size": 16, "tokens": 256}


def bench(geometry, rows, fmt=None):
    b = {"machine": dict(H100), "geometry": geometry, "training": rows}
    if fmt is not None:
        b["format"] = fmt
    return b


def row(scale, modes, batch=64, tokens=None):
    r = {"scale": scale, "batch": batch, "modes": {m: {"mfu": mfu} for m, mfu in modes.items()}}
    if tokens is not None:
        r["tokens"] = tokens
    return r


@pytest.fixture
def labels_only(monkeypatch):
    """FLOPs per image a constant: the tests of the MFU's labels need no FLOP counting (the end-to-end test
    counts them)."""
    monkeypatch.setattr("pra.estimate.flops_per_image", lambda cfg, scale, method, geom: 10 ** 6)


def line(r, scale, method="pra"):
    return r["scales"][scale]["methods"][method]


def test_a_benchmark_at_another_geometry_gives_no_measured_mfu(labels_only):
    """The committed benchmark's 256px MFU is no measurement of a 16-token model: assumed, with the reason, at the
    assumed MFU (not 'the lowest measured'), and no benchmark batch is set beside the job's."""
    cfg = tiny_config(scales=["tiny-XS", "tiny-S"])
    b = bench(IMAGENET, [row("tiny-XS", {"compiled": {"pra": 0.3}}, tokens=256)])
    r = estimate(cfg, 10, bench=b)
    for scale in ("tiny-XS", "tiny-S"):
        e = line(r, scale)
        assert (e["mfu"], e["mfu_kind"], e["peak_tflops"]) == (0.4, "assumed", 989.4)
        assert "256px, 16px patches, 3 channels, 256 tokens" in e["mfu_source"]
        assert "16px, 4px patches, 1 channel, 16 tokens" in e["mfu_source"]
        assert r["scales"][scale]["benchmark_per_gpu_batch"] is None
    assert r["measured"]["geometry_matches"] is False and "No MFU of it is used" in r["measured"]["note"]
    # at the experiment's geometry the same row is measured; a row timed at another token count is not, and the
    # 'never above the lowest measured' rule reads only the rows at this geometry
    b = bench(TINY, [row("tiny-XS", {"compiled": {"pra": 0.5}}, tokens=16),
                     row("tiny-S", {"compiled": {"pra": 0.2}}, batch=8, tokens=64)])
    r = estimate(cfg, 10, bench=b)
    assert (line(r, "tiny-XS")["mfu"], line(r, "tiny-XS")["mfu_kind"]) == (0.5, "measured")
    s = line(r, "tiny-S")
    assert (s["mfu"], s["mfu_kind"]) == (0.5, "lowest measured") and "tiny-XS's (" in s["mfu_source"]
    assert r["scales"]["tiny-S"]["benchmark_per_gpu_batch"] == 64  # the batch of the row whose MFU is used
    # a benchmark without a recorded geometry measures nothing the estimate can match
    r = estimate(cfg, 10, bench={"machine": dict(H100), "training": b["training"]})
    assert line(r, "tiny-XS")["mfu_kind"] == "assumed" and "records no geometry" in line(r, "tiny-XS")["mfu_source"]


def test_the_provenance_of_a_measured_mfu_is_stated(labels_only):
    """An earlier benchmark (no format key) timed the step alone; a job in 'fast' mode reading 'compiled' says so."""
    cfg = tiny_config()  # its CUDA jobs run the 'fast' mode
    old = bench(TINY, [row("tiny-XS", {"eager": {"pra": 0.2}, "compiled": {"pra": 0.3}})])
    r = estimate(cfg, 10, bench=old)
    assert r["benchmark_mode"] == "fast"
    e = line(r, "tiny-XS")
    assert (e["mfu"], e["mfu_kind"]) == (0.3, "measured")
    assert e["mfu_source"] == "measured (earlier benchmark: the step alone, compiled mode, not the job's fast mode)"
    assert "step alone" in r["measured"]["note"] and "iteration" not in r["measured"]["note"]
    new = bench(TINY, [row("tiny-XS", {"compiled": {"pra": 0.3}, "fast": {"pra": 0.35}})], fmt=2)
    r = estimate(cfg, 10, bench=new)
    assert line(r, "tiny-XS")["mfu_source"] == "measured (the job's iteration, fast mode)"
    assert "the training job's iteration" in r["measured"]["note"]
    new["training"][0]["modes"].pop("fast")
    e = line(estimate(cfg, 10, bench=new), "tiny-XS")
    assert e["mfu"] == 0.3
    assert e["mfu_source"] == "measured (the job's iteration, compiled mode, not the job's fast mode)"


def test_a_method_the_benchmark_did_not_time_takes_pras_mfu_as_an_assumption(labels_only):
    cfg = tiny_config(methods=["pra", "latent_tf", "pixel_noise"], scales=["tiny-XS", "tiny-S"])
    b = bench(TINY, [row("tiny-XS", {"fast": {"pra": 0.5, "latent_tf": 0.6}})], fmt=2)
    r = estimate(cfg, 10, bench=b)
    assert (line(r, "tiny-XS", "latent_tf")["mfu"], line(r, "tiny-XS", "latent_tf")["mfu_kind"]) == (0.6, "measured")
    e = line(r, "tiny-XS", "pixel_noise")
    assert (e["mfu"], e["mfu_kind"]) == (0.5, "assumed")
    assert e["mfu_source"] == "assumed: PRA's measured MFU (the job's iteration, fast mode) applied to pixel_noise"
    e = line(r, "tiny-S", "pixel_noise")  # neither the scale nor the method measured
    assert (e["mfu"], e["mfu_kind"]) == (0.5, "lowest measured") and "PRA's, applied to pixel_noise" in e["mfu_source"]


def test_the_assumptions_note_says_per_line_what_is_measured(labels_only):
    cfg = tiny_config(methods=["pra", "pixel_noise"])
    b = bench(TINY, [row("tiny-XS", {"fast": {"pra": 0.5}})], fmt=2)
    note = estimate(cfg, 10, bench=b)["assumptions"]["note"]
    assert "not measured" not in note and "nominal bf16 dense peak of the benchmark's card (NVIDIA H100)" in note
    assert "measured by the benchmark for tiny-XS pra (50%)" in note and "assumed for tiny-XS pixel_noise (50%)" in note
    note = estimate(cfg, 10)["assumptions"]["note"]
    assert "measured" not in note and "assumed for tiny-XS pra (40%), tiny-XS pixel_noise (40%)" in note
    assert "312 TFLOP/s, assumed" in note


@pytest.fixture(scope="module")
def cpu_benchmark(tmp_path_factory):
    """The GPU benchmark's training section on the CPU (tiny-XS, eager mode, a few iterations: seconds), with a
    peak injected where a CUDA run takes the card's nominal one (1 GFLOP/s: CPU-sized MFUs)."""
    import pra.bench.gpu as G

    tmp = tmp_path_factory.mktemp("bench")
    cfg = tiny_config(speed={"compile": "off"}, methods=["pra", "latent_tf", "pixel_noise"])  # jobs: 'eager' mode
    peak = 1e9
    timed = G.bench_training_job
    mp = pytest.MonkeyPatch()
    mp.setattr(G, "bench_training_job", lambda *a, **k: timed(*a, **{**k, "peak": peak}))
    try:
        res = G.run_gpu_bench(cfg, tmp / "out", device="cpu", scales=("tiny-XS",), batch=4, reps=1, window=1,
                              modes=("eager",), sections=("training",), geometry=Geometry(16, 1, 4, 10), work_dir=tmp)
    finally:
        mp.undo()
    assert res["errors"] == []
    path = tmp / "out" / "gpu.json"
    on_disk = json.loads(path.read_text())
    on_disk["machine"]["nominal_bf16_dense_flops"] = peak  # what a CUDA run records beside the MFUs
    path.write_text(json.dumps(on_disk))
    return cfg, path, peak


def test_benchmark_to_estimate_end_to_end_on_the_cpu(cpu_benchmark, capsys):
    cfg, path, peak = cpu_benchmark
    b = json.loads(path.read_text())
    t = b["training"][0]
    assert b["format"] == 2 and b["geometry"] == TINY and t["batch"] == 4
    r = estimate(cfg, 10, bench=b)
    assert r["benchmark_mode"] == "eager" and r["measured"]["geometry_matches"] is True
    assert r["scales"]["tiny-XS"]["benchmark_per_gpu_batch"] == 4
    for method in ("pra", "latent_tf"):  # the MFU read back is what the benchmark wrote, measured, on its peak
        e = line(r, "tiny-XS", method)
        assert e["mfu"] == t["modes"]["eager"]["mfu"][method] > 0
        assert (e["mfu_kind"], e["mfu_source"]) == ("measured", "measured (the job's iteration, eager mode)")
        assert e["peak_tflops"] == peak / 1e12
        # the estimate counts the FLOPs the benchmark's MFU was computed from (pra.flops, attention included)
        assert e["flops_per_image"] * t["batch"] == t["flops_per_step"][method]
        assert e["gpu_hours_compute"] == pytest.approx(e["total_flops"] / (peak * e["mfu"]) / 3600)
    e = line(r, "tiny-XS", "pixel_noise")
    assert (e["mfu"], e["mfu_kind"]) == (t["modes"]["eager"]["mfu"]["pra"], "assumed")
    # the command prints the same: the measured line and the note
    cfg = cfg.replace(methods=["pra"])
    estimate_job(SimpleNamespace(cfg=cfg, num_classes=None, mfu=None, gpu_bench=str(path), peak_tflops=None,
                                 intra_gbps=150.0, inter_gbps=25.0))
    err = capsys.readouterr().err
    assert f"MFU {t['modes']['eager']['mfu']['pra'] * 100:.0f}% of 0.001 TFLOP/s: measured (the job's iteration, " \
           "eager mode)" in err
    assert "Assumptions: " in err and "measured by the benchmark for tiny-XS pra" in err
    # the same benchmark is no measurement of another geometry (32px: 64 tokens) nor of another mode
    other = estimate(cfg.replace(data={"resolution": 32}), 10, bench=b)
    e = line(other, "tiny-XS")
    assert (e["mfu"], e["mfu_kind"]) == (0.4, "assumed") and "16 tokens; this experiment is 32px" in e["mfu_source"]
    fast = estimate(cfg.replace(speed={"compile": "auto"}), 10, bench=b)
    assert fast["benchmark_mode"] == "fast" and line(fast, "tiny-XS")["mfu_kind"] == "assumed"
    assert "no fast-mode MFU of tiny-XS" in line(fast, "tiny-XS")["mfu_source"]
    # read as an earlier benchmark (no format key): the label says so
    del b["format"]
    e = line(estimate(cfg, 10, bench=b), "tiny-XS")
    assert e["mfu_source"] == "measured (earlier benchmark: the step alone, eager mode)"


def test_bench_matmul_prints_the_rate_and_writes_nothing(tmp_path):
    """`python -m pra bench --matmul` is the cheap way to read the number the time budgets are stated against: it
    must not run the benchmark nor overwrite a benchmark's committed files."""
    import re

    from conftest import ROOT, run

    p = run(["python", "-m", "pra", "bench", "--matmul"], cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT)})
    m = re.fullmatch(r"fp32 matmul, 1 thread\(s\), 2048\^3: (\d+) GFLOP/s \(torch .+\)\n", p.stdout)
    assert m and int(m.group(1)) > 0, p.stdout
    assert list(tmp_path.iterdir()) == []
