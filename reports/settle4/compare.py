"""settle4's registered estimate across studies: how far the log-FID ratio pra / latent_tf moved from settle2's
measurement blocks (m1-m4, seeds 0-7, mask embedding started at zero) to settle4's block r1 (seeds 20-29, mask
embedding started at N(0, 0.02)).

    d_s = log FID(pra, seed s) - log FID(latent_tf, seed s)            per seed, within one study
    change = mean(d over settle4) - mean(d over settle2)                 Welch's t interval at 95%

An estimate, never a test. It mixes the fix with everything else that differs between the two studies (the code
between their registered hashes, the seeds, the machines, the classifier's feature space), so it reads "the
contrast moved by X", not "the fix moved it by X". Each study's own ratio is given with its 95% t interval.

    python reports/settle4/compare.py reports/settle2/blocks reports/settle4/blocks reports/settle4/compare
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from scipy import stats

SETTLE2_BLOCKS = ("m1", "m2", "m3", "m4")
SETTLE4_BLOCKS = ("r1",)
ARMS = ("latent_tf", "pra")


def _arm(run: dict) -> str | None:
    """latent_tf, pra at t_min 0.75 (the dose both studies registered), or None for any other run."""
    if run["method"] == "latent_tf" and not run.get("overrides"):
        return "latent_tf"
    if run["method"] == "pra" and run.get("overrides") == {"method": {"t_min": 0.75}}:
        return "pra"
    return None


def log_ratios(blocks_dir: str | Path, blocks) -> dict[int, float]:
    """Per seed, log FID(pra) - log FID(latent_tf) from the block records; every seed must have both arms once."""
    fid: dict[tuple[str, int], float] = {}
    for b in blocks:
        runs = sorted((Path(blocks_dir) / b / "runs").glob("*.json"))
        if not runs:
            raise SystemExit(f"{Path(blocks_dir) / b}: no run records")
        for p in runs:
            r = json.loads(p.read_text())
            arm = _arm(r)
            if arm is None:
                continue
            key = (arm, int(r["seed"]))
            if key in fid:
                raise SystemExit(f"{p}: {arm} seed {r['seed']} recorded twice")
            fid[key] = float(r["metrics"]["fid"])
    seeds = sorted({s for _, s in fid})
    missing = [(a, s) for s in seeds for a in ARMS if (a, s) not in fid]
    if missing:
        raise SystemExit(f"{blocks_dir}: runs missing for {missing}")
    return {s: math.log(fid[("pra", s)]) - math.log(fid[("latent_tf", s)]) for s in seeds}


def t_interval(x, level: float = 0.95) -> tuple[float, float, float]:
    n = len(x)
    m = sum(x) / n
    se = math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1) / n)
    q = stats.t.ppf(0.5 + level / 2, n - 1)
    return m, m - q * se, m + q * se


def welch(a, b, level: float = 0.95) -> dict:
    """Mean of b minus mean of a with Welch's interval (Welch-Satterthwaite degrees of freedom)."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((v - ma) ** 2 for v in a) / (na - 1)
    vb = sum((v - mb) ** 2 for v in b) / (nb - 1)
    se2 = va / na + vb / nb
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    q = stats.t.ppf(0.5 + level / 2, df)
    d = mb - ma
    return {"diff": d, "ci": [d - q * math.sqrt(se2), d + q * math.sqrt(se2)], "df": df, "level": level}


def _known_answers():
    # scipy's Welch test agrees with the interval: 0 lies on its edge exactly when p equals 1 - level
    a, b = [0.10, 0.05, 0.12, 0.08, 0.15], [0.02, -0.01, 0.06, 0.03, 0.00, 0.04]
    w = welch(a, b)
    p = stats.ttest_ind(b, a, equal_var=False).pvalue
    lvl = 1 - p
    edge = welch(a, b, level=lvl)["ci"]
    assert abs(min(abs(edge[0]), abs(edge[1]))) < 1e-9, edge
    assert w["ci"][0] < w["diff"] < w["ci"][1]
    # a shift of every value moves the difference by the shift and leaves the width alone
    w2 = welch(a, [v + 0.3 for v in b])
    assert abs(w2["diff"] - w["diff"] - 0.3) < 1e-12
    assert abs((w2["ci"][1] - w2["ci"][0]) - (w["ci"][1] - w["ci"][0])) < 1e-12
    # the one-sample interval is symmetric about the mean
    m, lo, hi = t_interval(b)
    assert abs((m - lo) - (hi - m)) < 1e-12


def main(settle2_blocks: str, settle4_blocks: str, out: str) -> None:
    _known_answers()
    old, new = log_ratios(settle2_blocks, SETTLE2_BLOCKS), log_ratios(settle4_blocks, SETTLE4_BLOCKS)
    w = welch(list(old.values()), list(new.values()))
    per = {}
    for name, d in (("settle2", old), ("settle4", new)):
        m, lo, hi = t_interval(list(d.values()))
        per[name] = {"seeds": sorted(d), "log_ratio_per_seed": d, "ratio": math.exp(m),
                     "ratio_ci95": [math.exp(lo), math.exp(hi)], "seeds_pra_higher": sum(v > 0 for v in d.values())}
    r = {"sources": {"settle2": [f"{settle2_blocks}/{b}" for b in SETTLE2_BLOCKS],
                     "settle4": [f"{settle4_blocks}/{b}" for b in SETTLE4_BLOCKS]},
         **per, "change_of_log_ratio": w, "change_as_factor": math.exp(w["diff"]),
         "change_as_factor_ci95": [math.exp(w["ci"][0]), math.exp(w["ci"][1])]}
    Path(out + ".json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    s2, s4 = per["settle2"], per["settle4"]
    text = (
        "# pra / latent_tf FID, settle2 against settle4 (a registered estimate, not a test)\n\n"
        f"From `{settle2_blocks}` ({', '.join(SETTLE2_BLOCKS)}) and `{settle4_blocks}` ({', '.join(SETTLE4_BLOCKS)}): "
        "per seed log FID(pra) - log FID(latent_tf); 95% t intervals; the change by Welch's interval.\n\n"
        "| study | mask embedding start | seeds | pra / latent_tf FID | seeds with pra higher |\n|---|---|---|---|---|\n"
        f"| settle2 | zero | {len(s2['seeds'])} | {s2['ratio']:.3f} [{s2['ratio_ci95'][0]:.3f}, {s2['ratio_ci95'][1]:.3f}] "
        f"| {s2['seeds_pra_higher']} of {len(s2['seeds'])} |\n"
        f"| settle4 | N(0, 0.02) | {len(s4['seeds'])} | {s4['ratio']:.3f} [{s4['ratio_ci95'][0]:.3f}, {s4['ratio_ci95'][1]:.3f}] "
        f"| {s4['seeds_pra_higher']} of {len(s4['seeds'])} |\n\n"
        f"Change (settle4 / settle2): {r['change_as_factor']:.3f} [{r['change_as_factor_ci95'][0]:.3f}, "
        f"{r['change_as_factor_ci95'][1]:.3f}] (Welch, {w['df']:.1f} df). It mixes the fix with the other differences "
        "between the studies (code, seeds, machines, the classifier's feature space).\n")
    Path(out + ".md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main(*sys.argv[1:4])
