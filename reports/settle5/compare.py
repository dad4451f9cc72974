"""settle5's registered estimates across studies (experiments/settle5/study.yaml), never tests:

    E1  the change of the per-seed log ratio pra / latent_tf from settle4 (1500 steps, block r1, seeds 20-29) to
        settle5 (4000 steps, blocks b1-b4, seeds 30-41): Welch's interval at 95% on the per-seed log ratios;
    E2  per arm, the change of log FID from settle4 to settle5 (Welch, 95%); both studies score with one mosaic
        classifier (settle4's, carried), so the levels are in one feature space;
    E3  per arm, the learning curve of settle5's runs (EMA proxy FID of 400 images every 1000 steps, geometric
        mean over seeds) and the per-seed ratio of the step-4000 value to the step-3000 value (a t interval at
        95% on the logs). The cosine schedule decays to zero at step 4000 (its factor is 0.15 at step 3000), so
        the ratio measures the annealing tail, not convergence, and a snapshot at step s is not what an s-step
        budget would give (amendment of 2026-12-08).

    E1k (added by the amendment of 2026-12-08, before any record of this study was read) E1 on KID instead of
        FID: FID on 1,000 samples carries an additive bias that pulls a ratio toward 1 as both arms' FID falls,
        KID is unbiased.

Before pooling, the script refuses records that are not what the registration names: each study's seeds
(settle4 20-29, settle5 30-41, both arms of every seed), its steps (1500, 4000), and one feature space (every
block's scorer digest and reference statistics equal to settle4's). Each study's own ratio is given with its
paired t interval at 95% (settle5's registered test, B1, is
`python -m pra study-report`'s, not this script's). E1 mixes the budget with everything else that differs between
the studies (the code between their registered hashes, the seeds, the machines), so it reads "the contrast moved
by X", not "the budget moved it by X".

    python reports/settle5/compare.py reports/settle4/blocks reports/settle5/blocks reports/settle5/compare
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from pra.paired import paired_t
from pra.statistics import welch

SETTLE4_BLOCKS = ("r1",)
SETTLE5_BLOCKS = ("b1", "b2", "b3", "b4")
REGISTERED = {"settle4": {"seeds": list(range(20, 30)), "steps": 1500},
              "settle5": {"seeds": list(range(30, 42)), "steps": 4000}}
SCORER_KEYS = ("feature_sha256", "reference_sha256", "data_sha256")
ARMS = ("latent_tf", "pra")
CURVE_STEPS = (1000, 2000, 3000, 4000)


def _arm(run: dict) -> str | None:
    """latent_tf, pra at t_min 0.75 (the dose both studies registered), or None for any other run."""
    if run["method"] == "latent_tf" and not run.get("overrides"):
        return "latent_tf"
    if run["method"] == "pra" and run.get("overrides") == {"method": {"t_min": 0.75}}:
        return "pra"
    return None


def load_runs(blocks_dir: str | Path, blocks) -> dict[tuple[str, int], dict]:
    """(arm, seed) -> run record, from the block records; every seed must have both arms exactly once."""
    runs: dict[tuple[str, int], dict] = {}
    for b in blocks:
        paths = sorted((Path(blocks_dir) / b / "runs").glob("*.json"))
        if not paths:
            raise SystemExit(f"{Path(blocks_dir) / b}: no run records")
        for p in paths:
            r = json.loads(p.read_text())
            arm = _arm(r)
            if arm is None:
                continue
            key = (arm, int(r["seed"]))
            if key in runs:
                raise SystemExit(f"{p}: {arm} seed {r['seed']} recorded twice")
            runs[key] = r
    seeds = sorted({s for _, s in runs})
    missing = [(a, s) for s in seeds for a in ARMS if (a, s) not in runs]
    if missing:
        raise SystemExit(f"{blocks_dir}: runs missing for {missing}")
    return runs


def check_registered(runs, blocks_dir: str | Path, blocks, study: str) -> dict:
    """Refuse records other than the registered ones: the seeds, the steps, one scorer across the blocks.
    Returns the scorer (feature, reference and data digests)."""
    want = REGISTERED[study]
    if seeds_of(runs) != want["seeds"]:
        raise SystemExit(f"{study}: seeds {seeds_of(runs)}, registered {want['seeds']}")
    steps = sorted({int(r["steps"]) for r in runs.values()})
    if steps != [want["steps"]]:
        raise SystemExit(f"{study}: runs trained for {steps} steps, registered {want['steps']}")
    scorers = {}
    for b in blocks:
        rec = json.loads((Path(blocks_dir) / b / "block.json").read_text())
        scorers[b] = {k: rec.get("scorer", {}).get(k) for k in SCORER_KEYS}
    if len({json.dumps(v, sort_keys=True) for v in scorers.values()}) != 1 or None in next(iter(scorers.values())).values():
        raise SystemExit(f"{study}: the blocks scored in different or unrecorded feature spaces: {scorers}")
    return next(iter(scorers.values()))


def seeds_of(runs) -> list[int]:
    return sorted({s for _, s in runs})


def fid(runs, arm: str, metric: str = "fid") -> list[float]:
    return [float(runs[(arm, s)]["metrics"][metric]) for s in seeds_of(runs)]


def log_ratios(runs, metric: str = "fid") -> list[float]:
    """Per seed (in seed order), log FID(pra) - log FID(latent_tf) (or the same of `metric`)."""
    return [math.log(p) - math.log(t) for p, t in zip(fid(runs, "pra", metric), fid(runs, "latent_tf", metric))]


def curve(run: dict, weights: str = "ema") -> dict[int, float]:
    """Step -> proxy FID of one run's evaluation along training."""
    return {int(e["step"]): float(e["fid"]) for e in run.get("along_training", []) if e["weights"] == weights}


def _exp(x: tuple[float, float]) -> list[float]:
    return [math.exp(x[0]), math.exp(x[1])]


def _welch_factor(old: list[float], new: list[float]) -> dict:
    """exp of mean(new) - mean(old) with Welch's 95% interval (values are logs)."""
    w = welch(new, old)
    return {"factor": math.exp(w.diff), "ci95": _exp(w.ci), "p": w.p, "n_old": w.n_b, "n_new": w.n_a}


def estimates(old_runs, new_runs) -> dict:
    out: dict = {"per_study": {}}
    for name, runs in (("settle4", old_runs), ("settle5", new_runs)):
        t = paired_t(fid(runs, "pra"), fid(runs, "latent_tf"), names=("pra", "latent_tf"), metric="fid")
        out["per_study"][name] = {
            "seeds": seeds_of(runs), "ratio": t.ratio, "ratio_ci95": list(t.ratio_ci), "p": t.p,
            "sd_log_ratio": t.sd_diff, "seeds_pra_higher": int(sum(d > 0 for d in log_ratios(runs))),
            "fid_geo_mean": {a: float(np.exp(np.mean(np.log(fid(runs, a))))) for a in ARMS}}
    out["E1_change_of_ratio"] = _welch_factor(log_ratios(old_runs), log_ratios(new_runs))
    if all("kid" in r["metrics"] for r in (*old_runs.values(), *new_runs.values())):
        out["E1k_change_of_kid_ratio"] = _welch_factor(log_ratios(old_runs, "kid"), log_ratios(new_runs, "kid"))
        for name, runs in (("settle4", old_runs), ("settle5", new_runs)):
            t = paired_t(fid(runs, "pra", "kid"), fid(runs, "latent_tf", "kid"), names=("pra", "latent_tf"))
            out["per_study"][name]["kid_ratio"], out["per_study"][name]["kid_ratio_ci95"] = t.ratio, list(t.ratio_ci)
    out["E2_change_of_fid"] = {a: _welch_factor(list(np.log(fid(old_runs, a))), list(np.log(fid(new_runs, a))))
                               for a in ARMS}
    e3 = {}
    for a in ARMS:
        curves = [curve(new_runs[(a, s)]) for s in seeds_of(new_runs)]
        present = [st for st in CURVE_STEPS if all(st in c for c in curves)]
        row = {"steps": present,
               "fid_geo_mean": [float(np.exp(np.mean([math.log(c[st]) for c in curves]))) for st in present]}
        if 3000 in present and 4000 in present:
            d = [math.log(c[4000]) - math.log(c[3000]) for c in curves]
            t = paired_t([c[4000] for c in curves], [c[3000] for c in curves], names=("4000", "3000"))
            row["ratio_4000_over_3000"] = t.ratio
            row["ratio_4000_over_3000_ci95"] = list(t.ratio_ci) if t.ratio_ci else None
            row["seeds_lower_at_4000"] = int(sum(x < 0 for x in d))
        e3[a] = row
    out["E3_learning_curve"] = e3
    return out


def _fake_runs(seeds, fid_of) -> dict:
    runs = {}
    for s in seeds:
        for a in ARMS:
            runs[(a, s)] = {"method": a, "overrides": {"method": {"t_min": 0.75}} if a == "pra" else {},
                            "seed": s, "metrics": {"fid": fid_of(a, s), "kid": fid_of(a, s) / 2}, "steps": 4000,
                            "along_training": [{"step": st, "weights": "ema", "fid": fid_of(a, s) * (4000 / st)}
                                               for st in CURVE_STEPS]}
    return runs


def _known_answers() -> None:
    """Synthetic records with known ratios: the estimates must recover them, and a null must cover 1."""
    rng = np.random.default_rng(0)
    jitter = {s: float(rng.normal(0, 0.05)) for s in range(40)}
    old = _fake_runs(range(10), lambda a, s: 50 * math.exp(jitter[s]) * (1.10 if a == "pra" else 1.0))
    new = _fake_runs(range(20, 32), lambda a, s: 30 * math.exp(jitter[s]) * (0.95 if a == "pra" else 1.0))
    e = estimates(old, new)
    # the per-seed jitter is shared by both arms of a seed: the ratios are exact
    assert abs(e["per_study"]["settle4"]["ratio"] - 1.10) < 1e-9
    assert abs(e["per_study"]["settle5"]["ratio"] - 0.95) < 1e-9
    assert abs(e["E1_change_of_ratio"]["factor"] - 0.95 / 1.10) < 1e-9
    # per arm the jitter does not cancel: the factor is near 30/50 and its interval covers it
    lt = e["E2_change_of_fid"]["latent_tf"]
    shift = np.mean([jitter[s] for s in range(20, 32)]) - np.mean([jitter[s] for s in range(10)])
    assert abs(lt["factor"] - 0.6 * math.exp(shift)) < 1e-9 and lt["ci95"][0] < lt["factor"] < lt["ci95"][1]
    # curves 4000/st times the final FID: the step-4000 to step-3000 ratio is 3/4 on every seed
    assert abs(e["E3_learning_curve"]["pra"]["ratio_4000_over_3000"] - 0.75) < 1e-9
    assert e["E3_learning_curve"]["pra"]["seeds_lower_at_4000"] == 12
    # a null: independent noise per run with no arm effect; the change's interval covers 1
    noise = {(a, s): float(rng.normal(0, 0.05)) for a in ARMS for s in range(40)}
    old0 = _fake_runs(range(10), lambda a, s: 40 * math.exp(noise[(a, s)]))
    new0 = _fake_runs(range(20, 32), lambda a, s: 40 * math.exp(noise[(a, s)]))
    lo, hi = estimates(old0, new0)["E1_change_of_ratio"]["ci95"]
    assert lo < 1 < hi, (lo, hi)
    # coverage with noise (intervals exercised): a true change of the ratio by 0.9 and of latent_tf's level by
    # 0.7, noise sd 0.06 per run; the 95% intervals must cover the truth in 90-99% of 400 replications (a flipped
    # direction covers almost never, an interval twice too wide almost always)
    cover = {"E1": 0, "E2": 0}
    for _ in range(400):
        e_old = {(a, s): float(rng.normal(0, 0.06)) for a in ARMS for s in range(10)}
        e_new = {(a, s): float(rng.normal(0, 0.06)) for a in ARMS for s in range(20, 32)}
        o = _fake_runs(range(10), lambda a, s: 50 * math.exp(e_old[(a, s)]) * (1.1 if a == "pra" else 1.0))
        n = _fake_runs(range(20, 32), lambda a, s: 35 * math.exp(e_new[(a, s)]) * (0.99 if a == "pra" else 1.0))
        r = estimates(o, n)
        cover["E1"] += r["E1_change_of_ratio"]["ci95"][0] < 0.9 < r["E1_change_of_ratio"]["ci95"][1]
        cover["E2"] += r["E2_change_of_fid"]["latent_tf"]["ci95"][0] < 0.7 < r["E2_change_of_fid"]["latent_tf"]["ci95"][1]
    assert all(0.90 * 400 <= c <= 0.99 * 400 for c in cover.values()), cover
    # arm selection and the registration checks on records written to disk: a run of another dose is skipped,
    # a missing seed or another step count is refused
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        def write(block, runs, scorer="f"):
            d = Path(tmp) / block / "runs"
            d.mkdir(parents=True)
            for (a, s), r in runs.items():
                (d / f"{a}_{s}.json").write_text(json.dumps(r))
            (Path(tmp) / block / "block.json").write_text(json.dumps(
                {"scorer": {"feature_sha256": scorer, "reference_sha256": "r", "data_sha256": "d"}}))
        runs = _fake_runs(range(30, 42), lambda a, s: 40.0)
        other = {**runs[("pra", 30)], "overrides": {"method": {"t_min": 1.0}}, "metrics": {"fid": 1.0, "kid": 1.0}}
        write("b1", {k: v for k, v in runs.items() if k[1] < 36} | {("pra_t1", 30): other})
        write("b2", {k: v for k, v in runs.items() if k[1] >= 36})
        got = load_runs(tmp, ("b1", "b2"))
        assert seeds_of(got) == list(range(30, 42)) and all(r["metrics"]["fid"] == 40.0 for r in got.values())
        assert check_registered(got, tmp, ("b1", "b2"), "settle5")["feature_sha256"] == "f"
        for bad in ({k: v for k, v in got.items() if k[1] != 41},
                    {k: {**v, "steps": 1500} for k, v in got.items()}):
            try:
                check_registered(bad, tmp, ("b1", "b2"), "settle5")
            except SystemExit:
                continue
            raise AssertionError("check_registered accepted records other than the registered")
        (Path(tmp) / "b2" / "block.json").write_text(json.dumps(
            {"scorer": {"feature_sha256": "g", "reference_sha256": "r", "data_sha256": "d"}}))
        try:
            check_registered(got, tmp, ("b1", "b2"), "settle5")
        except SystemExit:
            pass
        else:
            raise AssertionError("check_registered accepted two feature spaces")


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def markdown(e: dict, sources: dict) -> str:
    s4, s5 = e["per_study"]["settle4"], e["per_study"]["settle5"]
    e1 = e["E1_change_of_ratio"]
    lines = [
        "# pra / latent_tf FID at 1500 (settle4) and 4000 steps (settle5): registered estimates, not tests\n",
        f"From `{sources['settle4']}` ({', '.join(SETTLE4_BLOCKS)}) and `{sources['settle5']}` "
        f"({', '.join(SETTLE5_BLOCKS)}): both scored with settle4's mosaic classifier. Paired t intervals at 95% "
        "within each study; Welch's intervals at 95% across them.\n",
        "| study | steps | seeds | pra / latent_tf FID | sd of the log ratio | seeds with pra higher | "
        "latent_tf FID (geo. mean) | pra FID (geo. mean) |",
        "|---|---|---|---|---|---|---|---|"]
    for name, st, r in (("settle4", 1500, s4), ("settle5", 4000, s5)):
        lines.append(f"| {name} | {st} | {len(r['seeds'])} | {_fmt(r['ratio'])} [{_fmt(r['ratio_ci95'][0])}, "
                     f"{_fmt(r['ratio_ci95'][1])}] | {_fmt(r['sd_log_ratio'])} | {r['seeds_pra_higher']} of "
                     f"{len(r['seeds'])} | {r['fid_geo_mean']['latent_tf']:.1f} | {r['fid_geo_mean']['pra']:.1f} |")
    lines += ["",
              f"E1, change of the ratio (settle5 / settle4): {_fmt(e1['factor'])} [{_fmt(e1['ci95'][0])}, "
              f"{_fmt(e1['ci95'][1])}]. It mixes the budget with the other differences between the studies "
              "(code, seeds, machines).\n"]
    if "E1k_change_of_kid_ratio" in e:
        k = e["E1k_change_of_kid_ratio"]
        lines += [f"E1k, the same on KID (pra / latent_tf KID: settle4 {_fmt(s4['kid_ratio'])}, settle5 "
                  f"{_fmt(s5['kid_ratio'])}): {_fmt(k['factor'])} [{_fmt(k['ci95'][0])}, {_fmt(k['ci95'][1])}].\n"]
    lines += [
              "E2, change of each arm's FID (settle5 / settle4):\n",
              "| arm | factor | 95% interval |", "|---|---|---|"]
    for a in ARMS:
        r = e["E2_change_of_fid"][a]
        lines.append(f"| {a} | {_fmt(r['factor'])} | [{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}] |")
    lines += ["", "E3, settle5's learning curves (EMA weights, proxy FID of 400 images, geometric mean over seeds; the "
              "cosine schedule reaches zero at step 4000, so the last column is the annealing tail, and a snapshot "
              "at step s is not an s-step budget):\n",
              "| arm | " + " | ".join(f"step {st}" for st in CURVE_STEPS) + " | step 4000 / step 3000 | seeds lower at 4000 |",
              "|---|" + "---|" * (len(CURVE_STEPS) + 2)]
    for a in ARMS:
        r = e["E3_learning_curve"][a]
        vals = dict(zip(r["steps"], r["fid_geo_mean"]))
        cells = [f"{vals[st]:.1f}" if st in vals else "-" for st in CURVE_STEPS]
        ratio = (f"{_fmt(r['ratio_4000_over_3000'])} [{_fmt(r['ratio_4000_over_3000_ci95'][0])}, "
                 f"{_fmt(r['ratio_4000_over_3000_ci95'][1])}]" if "ratio_4000_over_3000" in r else "-")
        lower = f"{r['seeds_lower_at_4000']} of {len(e['per_study']['settle5']['seeds'])}" if "seeds_lower_at_4000" in r else "-"
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {ratio} | {lower} |")
    return "\n".join(lines) + "\n"


def main(settle4_blocks: str, settle5_blocks: str, out: str) -> None:
    _known_answers()
    old, new = load_runs(settle4_blocks, SETTLE4_BLOCKS), load_runs(settle5_blocks, SETTLE5_BLOCKS)
    scorer = check_registered(old, settle4_blocks, SETTLE4_BLOCKS, "settle4")
    if check_registered(new, settle5_blocks, SETTLE5_BLOCKS, "settle5") != scorer:
        raise SystemExit(f"settle5 scored in another feature space than settle4 ({scorer})")
    e = estimates(old, new)
    e["scorer"] = scorer
    sources = {"settle4": settle4_blocks, "settle5": settle5_blocks}
    e["sources"] = {"settle4": [f"{settle4_blocks}/{b}" for b in SETTLE4_BLOCKS],
                    "settle5": [f"{settle5_blocks}/{b}" for b in SETTLE5_BLOCKS]}
    Path(out + ".json").write_text(json.dumps(e, indent=1, sort_keys=True) + "\n")
    text = markdown(e, sources)
    Path(out + ".md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main(*sys.argv[1:4])
