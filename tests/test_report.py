"""Report tables: deterministic, honest about missing values, valid Markdown and LaTeX."""
import re

from pra.report import published, tables

ROWS = [
    {"scale": "tiny-S", "method": "pra", "variant": "base", "seed": 0, "params": 360000, "steps": 1000, "fid": 7.5,
     "is": 8.1, "kid": 0.004, "precision": 0.8, "recall": 0.7, "class_accuracy": 0.97, "num_samples": 1000},
    {"scale": "tiny-S", "method": "latent_tf", "variant": "base", "seed": 0, "params": 360000, "steps": 1000,
     "fid": 20.0, "is": 6.0, "num_samples": 1000},  # no KID/precision/recall/class accuracy
]
FLOOR = {"fid": 0.2, "is": 9.5, "precision": 0.95, "recall": 0.94, "num_samples": 359}
SUMMARY = {"name": "settle", "scale": "tiny-S", "seeds": [0, 1], "train_steps": 1000, "batch_size": 64,
           "variants": [{"name": "pra", "method": "pra", "variant": "base", "overrides": {},
                         "metrics": {"fid": {"mean": 7.5, "std": 0.5, "n": 2, "values": [7.0, 8.0]}}},
                        {"name": "z=8", "method": "pra", "variant": "model.z_dim=8", "overrides": {"model": {"z_dim": 8}},
                         "metrics": {"fid": {"mean": 9.0, "std": None, "n": 1, "values": [9.0]}}}],
           "outcome": ["FID: PRA is better (7.50 vs 9.00)."]}


def _all_tables():
    return [tables.main_table(ROWS, FLOOR, "feat", "ref", "digits"),
            tables.runs_table(ROWS, FLOOR, {}, "feat", "ref", 1000, 3, 0.99),
            tables.scaling_table(ROWS), tables.ablation_table(SUMMARY), tables.seeds_table(SUMMARY)]


def test_tables_do_not_depend_on_the_process_or_the_order_of_the_runs():
    """Regenerated in fresh interpreters with different hash seeds (set and dict order), and from the runs
    listed in reverse, the tables are byte-identical."""
    import subprocess
    import sys

    code = ("import hashlib, sys; sys.path.insert(0, 'tests'); import test_report as t; "
            "print(hashlib.sha256(repr([(x.markdown(), x.latex()) for x in t._all_tables()]).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout
               for seed in (1, 2, 3)}
    assert len(digests) == 1, digests
    forward = [(t.markdown(), t.latex()) for t in _all_tables()]
    ROWS.reverse()
    try:
        backward = [(t.markdown(), t.latex()) for t in _all_tables()]
    finally:
        ROWS.reverse()
    assert forward == backward


def test_missing_metric_is_a_dash_with_a_note_never_a_number():
    t = tables.runs_table(ROWS, FLOOR, {}, "feat", "ref", 1000, 3, None)
    row = t.frame[t.frame["method"] == "latent_tf"].iloc[0]
    assert row["precision ↑"] == tables.MISSING and row["class acc. ↑"] == tables.MISSING
    assert row["probe top-1 (layer)"] == tables.MISSING
    main = tables.main_table(ROWS, FLOOR, "feat", "ref", "digits")
    assert any("not quoted: —" in n for n in main.notes)
    farmer = main.frame[main.frame["method"].str.startswith("FARMER")].iloc[0]
    assert farmer["IS ↑"] == "269.2" and farmer["source"].startswith("paper")
    assert all(r["source"].startswith("paper") for _, r in main.frame.iterrows() if "ImageNet" in r["setting"])


def test_published_numbers_are_the_papers():
    d = {m: (p, f) for m, _, p, f, _, _ in published.IMAGENET256}
    assert d["PRA-S"] == (135, 2.58) and d["PRA-B"] == (250, 2.21) and d["PRA-L"] == (511, 1.94)
    assert d["FARMER"] == (1900, 3.60) and published.PRA_L_LINEAR_PROBE_TOP1 == 68.80


def test_markdown_is_a_table():
    for t in _all_tables():
        md = t.markdown().splitlines()
        header = next(i for i, ln in enumerate(md) if ln.startswith("| "))
        n = md[header].count("|")
        assert re.fullmatch(r"\|(---\|)+", md[header + 1])
        body = [ln for ln in md[header + 2:] if ln.startswith("|")]
        assert len(body) == len(t.frame) and all(ln.count("|") - ln.count("\\|") == n for ln in body)


def test_latex_is_balanced_booktabs():
    for t in _all_tables():
        tex = t.latex()
        assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
        ncols = len(t.frame.columns)
        spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
        assert len(spec) == ncols
        body = tex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
        for line in body:
            assert line.endswith("\\\\")
            assert len(re.findall(r"(?<!\\)&", line)) == ncols - 1, line
        stripped = re.sub(r"\\[{}]", "", tex)
        assert stripped.count("{") == stripped.count("}")
        code = "\n".join(ln for ln in tex.splitlines() if not ln.startswith("%"))
        assert not set("±↓↑×—") & set(code)
        plain = re.sub(r"\$\\(downarrow|uparrow|pm|times|leq)\$", "", code)
        plain = re.sub(r"\\[_%#$&{}]", "", plain)
        assert not re.search(r"[_%#$]", plain), plain


def test_seed_interval_is_the_t_interval_and_absent_for_one_seed():
    mean, lo, hi = tables.mean_interval([1.0, 2.0, 3.0])
    half = 4.30265 / 3 ** 0.5  # t(0.975, 2) from a printed table x sd 1 / sqrt(3)
    assert mean == 2.0 and abs(lo - (2 - half)) < 1e-5 and abs(hi - (2 + half)) < 1e-5
    assert tables.mean_interval([5.0]) is None
    t = tables.seeds_table(SUMMARY).frame.set_index("variant")
    assert t.loc["pra", "FID ↓ per seed"] == "7.00, 8.00" and t.loc["pra", "seeds"] == 2
    assert t.loc["pra", "FID ↓ mean [95% CI]"].startswith("7.50 [")
    assert t.loc["z=8", "FID ↓ mean [95% CI]"] == "9.00"  # one seed: no interval


def test_run_styles_tell_variants_apart_and_give_each_group_one_legend_entry():
    from pra.report.figures import run_styles

    keys = [("tiny-S", "pra", v, s) for v in ("method.t_min=0.25", "method.t_min=0.75") for s in (0, 1, 2)] + \
        [("tiny-S", "latent_tf", "base", 0), ("tiny-B", "latent_tf", "base", 0)]
    st = run_styles(keys)
    pra25 = [st[("tiny-S", "pra", "method.t_min=0.25", s)] for s in (0, 1, 2)]
    pra75 = st[("tiny-S", "pra", "method.t_min=0.75", 0)]
    # seeds of one variant share colour and dash; two variants of one method do not share a colour
    assert len({(p["color"], p["dash"]) for p in pra25}) == 1
    assert pra25[0]["color"] != pra75["color"]
    # one legend entry per (scale, method, variant), naming the seeds
    assert [p["label"] for p in pra25] == ["tiny-S pra [method.t_min=0.25] (3 seeds: s0-s2)", None, None]
    assert st[("tiny-S", "latent_tf", "base", 0)]["label"] == "tiny-S latent_tf s0"
    # a method's base variant keeps its own colour (as an ablation arm named after the method does), other variants
    # are lighter tints of it; scales differ in dash and marker
    from matplotlib.colors import to_hex, to_rgb
    from pra.report.figures import METHOD_COLORS, arm_colors
    assert st[("tiny-S", "latent_tf", "base", 0)]["color"] == to_hex(METHOD_COLORS["latent_tf"])
    both = run_styles([("tiny-S", "pra", "base", 0), ("tiny-S", "pra", "method.t_min=1.0", 0)])
    assert both[("tiny-S", "pra", "base", 0)]["color"] == to_hex(METHOD_COLORS["pra"]) == \
        arm_colors({"pra": "pra", "pra_t1": "pra"})["pra"]
    assert both[("tiny-S", "pra", "method.t_min=1.0", 0)]["color"] == arm_colors({"pra": "pra", "pra_t1": "pra"})["pra_t1"]
    assert min(to_rgb(both[("tiny-S", "pra", "method.t_min=1.0", 0)]["color"])) > min(to_rgb(METHOD_COLORS["pra"]))
    a, b = st[("tiny-S", "latent_tf", "base", 0)], st[("tiny-B", "latent_tf", "base", 0)]
    assert a["dash"] != b["dash"] and a["marker"] != b["marker"]


def _approximation(law=None, t_min=0.5):
    settings = {"images": 10, "split": "val", "ratio": "r", "content_rule": "c", "anchored_sampler": "s",
                "t_min": t_min, **({"perturbation_law": law} if law else {})}
    est = {"content_ratio": 0.5, "ci_content_ratio": [0.4, 0.6]}
    return {"applicable": True, "settings": settings, "constructions": {"pra": est, "twin": est},
            "pra_minus_twin_content_ratio": 0.0, "ci_pra_minus_twin_content_ratio": [-0.1, 0.1],
            "content_positions": [1, 2], "anchored_to_true": [0.2, 0.4]}


def test_approximation_table_names_the_perturbation_law_only_when_one_differs():
    """Default laws (recorded, or absent in records written before the setting existed) leave the table as it
    was; a model with another law adds a law column for every row and a note on the anchored start."""
    plain = tables.approximation_table("a", {"pra": _approximation("interpolant"), "old": _approximation(),
                                            "pixel": {"applicable": False}})
    assert "law" not in plain.frame.columns and len(plain.notes) == 1
    mixed = tables.approximation_table("a", {"pra": _approximation("interpolant"),
                                            "vp": _approximation("variance_preserving"),
                                            "pixel": {"applicable": False}})
    assert mixed.frame["law"].tolist() == ["interpolant", "variance_preserving", tables.MISSING]
    assert len(mixed.notes) == 2 and "flow's path" in mixed.notes[1]
    assert mixed.markdown().count("variance_preserving") >= 1
