"""The registered analysis of a study's measurement blocks: pooled, tested as registered, worded from the test.

Once every registered measurement block of a study is recorded (pra.study), its runs are pooled per
(experiment, ablation) (pra.study.pool: only blocks that ran the same result-determining code, experiment and
base config files), checked complete (every registered variant on every registered seed) and analysed with the
ablation's registered analysis (pra.analysis.analyse: the declared hypotheses as the confirmatory family, the
other comparisons as estimates with intervals). It refuses to test anything while a registered measurement block
is missing, or when an experiment file changed after its blocks ran (its hypotheses could have been edited after
the results were seen).

Output: <out>.json (every per-seed value, every test) and <out>.md (the registering commits, the deviations,
the confirmatory readings, then the estimates), and <out>_ratios.png (each comparison's geometric-mean ratio with
its interval and the per-seed ratios).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from pra.config import AblationConfig
from pra.typed import ConfigError

REPORTED = ("fid", "kid", "class_accuracy", "precision", "recall", "is")


def summary_from_runs(runs: list[dict], a: AblationConfig) -> dict:
    """An ablation summary (the shape pra.analysis reads) from per-run records of ablation `a`: per variant and
    metric the values over seeds, with the seeds they belong to; the reference resolved as the config resolves
    it (pra.config.ablations.reference_name)."""
    from pra.config.ablations import reference_name

    out = []
    for v in a.variants:
        mine = sorted((r for r in runs if r["variant"] == v.name), key=lambda r: r["seed"])
        metrics = {}
        for key in sorted({k for r in mine for k in r["metrics"]}):
            pairs = [(r["seed"], r["metrics"][key]) for r in mine
                     if isinstance(r["metrics"].get(key), (int, float)) and not isinstance(r["metrics"][key], bool)]
            if pairs:
                metrics[key] = {"values": [float(x) for _, x in pairs], "seeds": [s for s, _ in pairs]}
        out.append({"name": v.name, "method": mine[0]["method"] if mine else v.method, "overrides": v.overrides,
                    "metrics": metrics})
    seeds = sorted({r["seed"] for r in runs})
    return {"variants": out, "seeds": seeds, "reference": reference_name(a), "primary_metric": a.primary_metric}


def analyse_study(study_path: str | Path, root: str | Path = ".") -> dict:
    """Every (experiment, ablation) of the study's measurement blocks, pooled and analysed as registered."""
    from pra.analysis import analyse
    from pra.study import block_runs, load_records, load_study, pool

    root, study_path = Path(root), Path(study_path)
    study = load_study(study_path)
    measured = [b for b in study.blocks if b.phase == "measurement"]
    if not measured:
        raise ConfigError(f"{study_path}: no measurement block is registered; nothing to analyse")
    records = {r["block"]["id"]: r for r in load_records(root / study.records)}
    missing = [b.id for b in measured if b.id not in records]
    if missing:
        raise ConfigError(f"blocks {missing} are registered and not yet recorded: no hypothesis is tested before "
                          f"every registered measurement block is in")
    groups: dict[tuple, list] = {}
    for b in measured:
        groups.setdefault((b.experiment, b.ablation), []).append(b)
    out = {"study": study.name, "study_file": str(study_path), "deviations": list(study.deviations), "groups": []}
    for (experiment, ablation), blocks in groups.items():
        recs = [records[b.id] for b in blocks]
        now = hashlib.sha256((root / experiment).read_bytes()).hexdigest()
        changed = [r["block"]["id"] for r in recs if r["experiment_sha256"] != now]
        if changed:
            raise ConfigError(f"{experiment} changed after blocks {changed} ran (its hypotheses are read from it): "
                              f"restore it as registered, or analyse the change as a deviation apart")
        runs = pool(recs)
        _, a, _ = block_runs(blocks[0], root)
        want = {(v.name, r.seed) for b in blocks for v, r in block_runs(b, root)[2]}
        have = {(r["variant"], r["seed"]) for r in runs}
        if want - have:
            raise ConfigError(f"{experiment} / {ablation}: registered runs without a record: {sorted(want - have)}")
        summary = summary_from_runs(runs, a)
        comparisons, hypotheses, desc = analyse(summary, a)
        level = desc.get("level", 1 - a.alpha)
        out["groups"].append({
            "experiment": experiment, "ablation": ablation, "blocks": [b.id for b in blocks],
            "registering_commits": sorted({r["registration"]["study_commit"] for r in recs}),
            "run_commits": sorted({i["head_commit"] for r in recs for i in r.get("invocations", [r])}),
            "code_hash": recs[0]["registration"]["code_hash"],
            "seeds": summary["seeds"], "reference": summary["reference"], "analysis": desc,
            "hypotheses": hypotheses, "estimates": comparisons, "summary": summary,
            "all_pairs": all_pairs(summary, level),
            "seconds_per_step": {v.name: _mean([r.get("seconds_per_step") for r in runs if r["variant"] == v.name])
                                 for v in a.variants},
            "input_mse_last_fifth": {v.name: _mean([r.get("input_mse_last_fifth") for r in runs
                                                    if r["variant"] == v.name]) for v in a.variants},
            "wall_seconds": sum(r.get("wall_seconds") or 0 for r in recs),
            "scorers": {r["block"]["id"]: r.get("scorer") for r in recs}})
    return out


def feature_space_text(scorers: dict[str, dict | None]) -> str:
    """One sentence on the feature networks a group's blocks scored with (pra.study.scorer_record)."""
    digests = {b: (s or {}).get("feature_sha256") for b, s in scorers.items()}
    kinds = {b: (s or {}).get("feature_network", "classifier") for b, s in scorers.items()}
    unknown = sorted(b for b, d in digests.items() if not d)
    known = {d for d in digests.values() if d}
    reasons = [f"{b}: {s['new_classifier_reason']}" for b, s in scorers.items()
               if (s or {}).get("new_classifier_reason")]
    name = {"classifier": "feature classifier (weights sha256", "inception": "Inception network (weights file sha256"}
    if len(known) == 1 and not unknown:
        kind = next(iter(kinds.values()))
        text = f"Every block scored with one {name.get(kind, kind)} {next(iter(known))[:16]})."
    elif len(known) > 1:
        by = {d: sorted(b for b, x in digests.items() if x == d) for d in known}
        text = (f"The blocks scored with {len(known)} different feature networks ("
                + "; ".join(f"{d[:16]}: {', '.join(bs)}" for d, bs in sorted(by.items(), key=lambda x: x[1]))
                + "): FIDs of different blocks lie in different feature spaces; each seed's arms share one, so "
                  "paired ratios stay like for like, pooled levels do not.")
    else:
        text = ""
    if unknown:
        one = len(unknown) == 1
        text += (" " if text else "") + (f"Block{'' if one else 's'} {', '.join(unknown)} did not record "
                                         f"{'its' if one else 'their'} feature network's digest (recorded by an "
                                         "older version)")
        text += "." if len(digests) == 1 else (": whether all blocks share a feature space is not known from the "
                                               "records.")
    if reasons:
        text += " Feature network changes accepted: " + "; ".join(reasons) + "."
    return text


def all_pairs(summary: dict, level: float, metrics=("fid", "kid")) -> list[dict]:
    """Every pair of arms on every ratio metric, paired by seed on log values, with intervals at `level`:
    estimates beside the registered family (the family's own pairs included, on KID as a second metric), never
    tests."""
    from pra.analysis import aligned
    from pra.paired import paired_t

    names = [v["name"] for v in summary["variants"]]
    by = {v["name"]: v["metrics"] for v in summary["variants"]}
    out = []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            for m in metrics:
                if m not in by[x] or m not in by[y]:
                    continue
                a, b, common = aligned((by[x][m]["values"], by[y][m]["values"]),
                                       (by[x][m]["seeds"], by[y][m]["seeds"]))
                if len(common) >= 2 and min(a + b) > 0:
                    out.append({**paired_t(a, b, log=True, level=level, names=(x, y), metric=m).to_dict(),
                                "role": "estimate"})
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _g(x, d=3):
    return "-" if x is None else (f"{x:.{d}g}" if isinstance(x, float) else str(x))


def _interval(c: dict) -> str:
    if c.get("ratio_ci"):
        return f"{_g(c['ratio'])} [{_g(c['ratio_ci'][0])}, {_g(c['ratio_ci'][1])}]"
    if c.get("ci"):
        return f"{_g(c['mean_diff'])} [{_g(c['ci'][0])}, {_g(c['ci'][1])}]"
    return _g(c.get("mean_diff"))


def _p_text(c: dict) -> str:
    """A confirmatory comparison's p, with the exact sign-flip p beside it where the test computed one."""
    if not c:
        return "-"
    flip = c.get("p_sign_flip")
    return _g(c.get("p")) + (f" (sign-flip {_g(flip)})" if flip is not None else "")


def markdown(res: dict) -> str:
    lines = [f"# {res['study']}: the registered analysis", "",
             f"From the committed block records of `{res['study_file']}`; nothing here was chosen after the "
             f"measurement blocks ran."]
    if res["deviations"]:
        lines += ["", "Deviations from the registration:", ""] + [f"- {d}" for d in res["deviations"]]
    for g in res["groups"]:
        lines += ["", f"## {g['experiment']}, ablation `{g['ablation']}`", "",
                  f"Blocks {', '.join(g['blocks'])}; registered at {', '.join(c[:10] for c in g['registering_commits'])}; "
                  f"run at {', '.join(c[:10] for c in g['run_commits'])} under result code hash `{g['code_hash']}`; "
                  f"seeds {g['seeds']}; {g['wall_seconds'] / 3600:.2f} h of block wall time.", "",
                  *([feature_space_text(g["scorers"]), ""] if g.get("scorers") else []),
                  g["analysis"]["text"], "", "### Confirmatory hypotheses", "",
                  "| id | hypothesis | test | estimate (a/b or a-b) and interval | p | reading |", "|---|---|---|---|---|---|"]
        for h in g["hypotheses"]:
            c = h.get("comparison") or {}
            eq = h.get("equivalence")
            test = h.get("test", "-") + (f"; TOST within {eq['margin_ratio']:g}: p {_g(eq.get('p'))}" if eq else "")
            lines.append(f"| {h['id']} | {h['statement']} | {test} | {_interval(c) if c else '-'} | "
                         f"{_p_text(c)} | {h['outcome']} |")
        lines += ["", "### Estimates (every other variant against the reference, then the ablation's declared "
                  "estimates; intervals at the family's level; not tests)", ""]
        lines += (["| a vs b | metric | n | estimate and interval |", "|---|---|---|---|"] if g["estimates"] else
                  ["None: every variant other than the reference is in a hypothesis, and none is declared."])
        for c in g["estimates"]:
            why = (c.get("declared") or {}).get("why")
            lines.append(f"| {c['a']} vs {c['b']}{' (declared' + (': ' + why if why else '') + ')' if 'declared' in c else ''}"
                         f" | {c['metric']}{' (ratio)' if c.get('log') else ''} | {c.get('n', '-')} | "
                         f"{_interval(c)}{' — ' + c['reading'] if c.get('reading') else ''} |")
        lines += ["", f"### Every pair of arms (paired geometric-mean ratios, {g['analysis'].get('level', 0.95):.1%} "
                  "intervals; estimates, not tests)", "", "| a vs b | metric | n | ratio and interval |", "|---|---|---|---|"]
        for c in g["all_pairs"]:
            lines.append(f"| {c['a']} vs {c['b']} | {c['metric']} | {c['n']} | {_interval(c)} |")
        lines += ["", "### Per arm", "", "| arm | method | " + " | ".join(REPORTED) + " | s/step | input MSE (last fifth) |",
                  "|---|---|" + "---|" * len(REPORTED) + "---|---|"]
        for v in g["summary"]["variants"]:
            cells = []
            for k in REPORTED:
                m = v["metrics"].get(k)
                if not m:
                    cells.append("-")
                    continue
                vals = m["values"]
                if k in ("fid", "kid", "is") and min(vals) > 0:
                    cells.append(f"{math.exp(sum(map(math.log, vals)) / len(vals)):.3g} (geo.)")
                else:
                    cells.append(f"{sum(vals) / len(vals):.3g}")
            lines.append(f"| {v['name']} | {v['method']} | " + " | ".join(cells) + f" | "
                         f"{_g(g['seconds_per_step'].get(v['name']))} | {_g(g['input_mse_last_fifth'].get(v['name']))} |")
    return "\n".join(lines) + "\n"


def equivalence_rows(hypotheses: list[dict], n_rows: int) -> list[tuple[int, dict]]:
    """The y position of each 'equal' hypothesis in ratio_figure: rows are drawn bottom-up in reverse order of
    the row list (hypotheses first, then estimates), so hypothesis i sits at n_rows - 1 - i."""
    return [(n_rows - 1 - i, h) for i, h in enumerate(hypotheses) if h.get("expect") == "equal"]


def narrow_axis_ticks(lo: float, hi: float) -> list[float] | None:
    """Tick positions for a log ratio axis from lo to hi that spans at most a factor of 3, where a log axis's own
    ticks leave one or two labels (0.85 to 1.25 holds only 1 and the minor tick 0.9): about six evenly spaced
    round values, the axis being close to linear there. None for a wider axis, which keeps its log ticks."""
    import matplotlib.ticker

    if not (lo > 0 and hi / lo <= 3.0):
        return None
    locator = matplotlib.ticker.MaxNLocator(nbins=6, steps=[1, 2, 5, 10])
    return [round(float(t), 10) for t in locator.tick_values(lo, hi) if lo <= t <= hi]


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels for evenly spaced ticks with as many decimals as their spacing needs (1.05, 1.1, 1.15, not
    1.1, 1.1, 1.2)."""
    if len(ticks) < 2:
        return [f"{t:g}" for t in ticks]
    step = min(b - a for a, b in zip(ticks, ticks[1:]))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [f"{t:.{decimals}f}" for t in ticks]


def minor_tick_label(x: float, _pos=None) -> str:
    """Labels for a log axis's minor ticks: only those with leading digit 2, 3 or 5 (0.2, 0.3, 0.5, 2, 3, 5, ...),
    so that neighbouring labels do not overlap."""
    if x <= 0:
        return ""
    lead = round(x / 10 ** math.floor(math.log10(x) + 1e-9), 6)
    return f"{x:.2g}" if lead in (2.0, 3.0, 5.0) else ""


def ratio_figure(res: dict, path: Path) -> None:
    """Each comparison's geometric-mean ratio with its interval (confirmatory ones marked) and its per-seed
    ratios, on a log axis; one panel per analysed group."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = res["groups"]
    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 1.2 + 0.55 * max(len(g["hypotheses"]) + len(g["estimates"])
                                                                              for g in groups) * 1.0), squeeze=False)
    for ax, g in zip(axes[:, 0], groups):
        rows = [(f"{h['id']}: {h['variant']} / {h['reference']}", h.get("comparison"), True) for h in g["hypotheses"]]
        rows += [(f"{c['a']} / {c['b']}", c, False) for c in g["estimates"] if c.get("log")]
        margin = g["analysis"].get("equivalence_margin")
        for y, h in equivalence_rows(g["hypotheses"], len(rows)) if margin else ():
            ax.fill_betweenx([y - 0.3, y + 0.3], 1 / margin, margin, color="C3", alpha=0.12, lw=0)
        per_seed = {v["name"]: dict(zip(v["metrics"].get("fid", {}).get("seeds", []),
                                        v["metrics"].get("fid", {}).get("values", [])))
                    for v in g["summary"]["variants"]}
        for y, (label, c, confirm) in enumerate(reversed(rows)):
            if not c or not c.get("ratio_ci"):
                continue
            colour = "C3" if confirm else "C0"
            ax.plot(c["ratio_ci"], [y, y], color=colour, lw=2)
            ax.plot([c["ratio"]], [y], "o", color=colour)
            a, b = per_seed.get(c["a"], {}), per_seed.get(c["b"], {})
            seeds = [s for s in a if s in b and a[s] > 0 and b[s] > 0]
            ax.plot([a[s] / b[s] for s in seeds], [y + 0.18] * len(seeds), "|", color="0.4", ms=6)
        ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=8)
        ax.axvline(1.0, color="0.6", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
        ticks = narrow_axis_ticks(*ax.get_xlim())
        if ticks:
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter(tick_labels(ticks)))
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        else:
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor_tick_label))
        ax.set_xlabel("FID ratio a / b (geometric mean over paired seeds, interval at the family's level; "
                      "ticks: single seeds)", fontsize=8)
        shaded = "; shaded: the equivalence margin" if margin and equivalence_rows(g["hypotheses"], len(rows)) else ""
        ax.set_title(f"{g['experiment']} / {g['ablation']}\n(red: confirmatory{shaded}; blue: estimates)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def study_report_job(args):
    from pra.io import write_json, write_text

    res = analyse_study(args.study)
    out = Path(args.out)
    write_json(out.with_suffix(".json"), res)
    write_text(out.with_suffix(".md"), markdown(res))
    ratio_figure(res, out.with_name(out.name + "_ratios.png"))
    print(markdown(res))
