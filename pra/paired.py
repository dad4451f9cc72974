"""Paired comparisons over training seeds, as a registered study analyses them.

Two arms trained on the same seeds give one difference per seed. Endpoints such as FID and KID are
compared on the log scale (a difference of logs is a ratio, so margins and minimal effects are ratios):

* `paired_t`: the primary test, a paired t-test with its interval (at a level the caller sets, e.g. the
  Bonferroni level 1 - alpha/m of a family of m registered comparisons);
* `sign_flip`: the exact sign-flip (permutation) p-value, a sensitivity check only: with n pairs its
  smallest possible value is 2/2^n;
* `tost`: an equivalence test, two one-sided t-tests against a margin declared as a ratio (e.g. 1.15:
  within ±log 1.15); "equal" is said only when it rejects both sides;
* `power` / `seeds_for` / `detectable_ratio`: the power of the paired t-test (noncentral t), the seeds
  a target power needs and the smallest ratio a given number of seeds detects; `tost_power` / `seeds_for_tost`
  the same for equivalence.

Every function works on plain sequences and is checked against scipy and simulation in tests/test_paired.py.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np


def differences(a, b, log: bool = True) -> np.ndarray:
    """Per-seed differences a_i - b_i (of logs when log=True); a and b in seed order."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need equal 1-d shapes, got {a.shape} and {b.shape}")
    if log:
        if (a <= 0).any() or (b <= 0).any():
            raise ValueError("log-scale comparison of non-positive values")
        return np.log(a) - np.log(b)
    return a - b


@dataclass
class PairedTest:
    a: str
    b: str
    metric: str
    log: bool
    n: int
    mean_diff: float                  # mean of the per-seed differences (of logs when log)
    sd_diff: float | None
    level: float
    ci: tuple[float, float] | None    # t-interval of the mean difference at `level`
    p: float | None                   # two-sided paired t p-value
    ratio: float | None = None        # exp(mean_diff) when log: a / b as a geometric-mean ratio
    ratio_ci: tuple[float, float] | None = None
    p_sign_flip: float | None = None  # exact, a sensitivity check

    def to_dict(self) -> dict:
        return asdict(self)


def paired_t(a, b, *, log: bool = True, level: float = 0.95, names=("a", "b"), metric: str = "") -> PairedTest:
    from scipy import stats

    d = differences(a, b, log)
    n, mean = len(d), float(d.mean()) if len(d) else float("nan")
    base = dict(a=names[0], b=names[1], metric=metric, log=log, n=n, mean_diff=mean, level=level)
    if n < 2:
        return PairedTest(**base, sd_diff=None, ci=None, p=None)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    if se == 0:
        ci, p = (mean, mean), (1.0 if mean == 0 else 0.0)
    else:
        q = float(stats.t.ppf((1 + level) / 2, n - 1))
        ci, p = (mean - q * se, mean + q * se), float(2 * stats.t.sf(abs(mean / se), n - 1))
    out = PairedTest(**base, sd_diff=sd, ci=ci, p=p, p_sign_flip=sign_flip(d) if n <= 20 else None)
    if log:
        out.ratio, out.ratio_ci = math.exp(mean), (math.exp(ci[0]), math.exp(ci[1]))
    return out


def sign_flip(d) -> float | None:
    """Exact two-sided sign-flip p-value of mean(d) = 0: the share of the 2^n sign assignments whose |mean|
    reaches the observed one (n <= 20)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n < 1:
        return None
    if n > 20:
        raise ValueError("exact sign-flip enumeration is limited to 20 pairs")
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    means = np.abs(signs @ d / n)
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def tost(a, b, *, margin_ratio: float, alpha: float = 0.05, log: bool = True) -> dict:
    """Equivalence of two paired arms within ±log(margin_ratio) (±margin_ratio on the raw scale when
    log=False): two one-sided paired t-tests; equivalent when both reject at alpha, i.e. when the (1 - 2
    alpha) interval lies inside the margin."""
    from scipy import stats

    if margin_ratio <= (1.0 if log else 0.0):
        raise ValueError("the margin must be a ratio above 1 (log) or a positive difference")
    d = differences(a, b, log)
    n = len(d)
    margin = math.log(margin_ratio) if log else margin_ratio
    if n < 2:
        return {"n": n, "margin": margin, "p": None, "equivalent": False, "ci": None, "alpha": alpha}
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        p = 0.0 if abs(mean) < margin else 1.0
        ci = (mean, mean)
    else:
        p_low = float(stats.t.sf((mean + margin) / se, n - 1))   # H0: mean <= -margin
        p_high = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
        p = max(p_low, p_high)
        q = float(stats.t.ppf(1 - alpha, n - 1))
        ci = (mean - q * se, mean + q * se)
    return {"n": n, "margin": margin, "margin_ratio": margin_ratio, "mean_diff": mean, "p": p,
            "equivalent": p < alpha, "ci": ci, "level": 1 - 2 * alpha, "alpha": alpha}


def bonferroni_level(m: int, alpha: float = 0.05) -> float:
    """Two-sided interval level of one of m comparisons at family-wise alpha: 1 - alpha/m."""
    return 1 - alpha / m


def power(n: int, effect: float, sd: float, alpha: float) -> float:
    """Power of the two-sided paired t-test with n pairs, true mean difference `effect` and per-pair sd."""
    from scipy import stats

    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    df, nc = n - 1, effect / sd * math.sqrt(n)
    q = stats.t.ppf(1 - alpha / 2, df)
    p = float(stats.nct.sf(q, df, nc) + stats.nct.cdf(-q, df, nc))
    return p if math.isfinite(p) else 1.0  # scipy's nct overflows only where the power is 1 to machine precision


def seeds_for(effect: float, sd: float, alpha: float, target: float = 0.8, max_n: int = 1000) -> int | None:
    """Smallest number of paired seeds whose power reaches `target` (None beyond max_n)."""
    for n in range(2, max_n + 1):
        if power(n, effect, sd, alpha) >= target:
            return n
    return None


def detectable_ratio(n: int, sd: float, alpha: float, target: float = 0.8) -> float:
    """The smallest ratio exp(effect) that n paired seeds detect with power `target` (sd of log differences)."""
    lo, hi = 0.0, 10 * sd + 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(n, mid, sd, alpha) >= target else (mid, hi)
    return math.exp(hi)


def tost_power(n: int, margin: float, sd: float, alpha: float, true_diff: float = 0.0) -> float:
    """Power of TOST (margin on the analysed scale) with n pairs when the true mean difference is
    true_diff: P(both one-sided tests reject), from the noncentral t of each side (a lower bound that is
    tight when the margin is several standard errors)."""
    from scipy import stats

    if n < 2:
        return 0.0
    df, se = n - 1, sd / math.sqrt(n)
    q = stats.t.ppf(1 - alpha, df)
    p_low = float(stats.nct.sf(q, df, (true_diff + margin) / se))     # rejects mean <= -margin
    p_high = float(stats.nct.cdf(-q, df, (true_diff - margin) / se))  # rejects mean >= +margin
    p_low, p_high = (p if math.isfinite(p) else 1.0 for p in (p_low, p_high))
    return float(max(0.0, p_low + p_high - 1.0))


def seeds_for_tost(margin: float, sd: float, alpha: float, target: float = 0.8, max_n: int = 1000) -> int | None:
    for n in range(2, max_n + 1):
        if tost_power(n, margin, sd, alpha) >= target:
            return n
    return None


def sd_of_differences(sd_a: float, sd_b: float, correlation: float = 0.0) -> float:
    """sd of a - b for two arms with per-seed sds sd_a, sd_b and a correlation across seeds (0 when the pilot
    is too small to estimate it)."""
    return math.sqrt(max(0.0, sd_a ** 2 + sd_b ** 2 - 2 * correlation * sd_a * sd_b))


# ---- the power table of a planned study ------------------------------------------------------------------
def arm_of(key: str) -> str | None:
    """A report's metrics.json key 'tiny-S/pra/base/s0' -> its arm 'tiny-S/pra/base'; None for an entry that is
    not a trained run (the floor, an ablation's means)."""
    parts = key.split("/")
    return "/".join(parts[:3]) if len(parts) == 4 and parts[3][:1] == "s" and parts[3][1:].isdigit() else None


def arm_spreads(metrics: dict, metric: str = "fid", log: bool = True) -> tuple[dict[str, dict], list[str]]:
    """Per arm (scale/method/variant) of a report's metrics.json: its seeds, df and the sd of the metric over
    them (of its log with log=True, non-positive values then left out and named in the notes); arms with fewer
    than 2 seeds are left out."""
    values: dict[str, list[float]] = {}
    for key, row in metrics.items():
        arm = arm_of(key)
        if arm is not None and isinstance(row, dict) and isinstance(row.get(metric), (int, float)):
            values.setdefault(arm, []).append(float(row[metric]))
    arms, notes = {}, []
    for arm, v in sorted(values.items()):
        if log and min(v) <= 0:
            notes.append(f"{arm}: {sum(x <= 0 for x in v)} non-positive {metric} value(s) of the spread left out "
                         "(no log)")
            v = [x for x in v if x > 0]
        if len(v) >= 2:
            arms[arm] = {"seeds": len(v), "df": len(v) - 1, "sd": float(np.std(np.log(v) if log else v, ddof=1))}
    return arms, notes


def pooled_sd(arms: list[tuple[int, float]]) -> float:
    """The pooled sd of (df, sd) pairs: sqrt(sum df sd^2 / sum df)."""
    return math.sqrt(sum(df * sd ** 2 for df, sd in arms) / sum(df for df, _ in arms))


def arm_log_sds(metrics: dict, metric: str = "fid") -> dict[str, dict]:
    """Per arm: the seeds and the sd of log(metric) over them (arm_spreads on the log scale)."""
    return {arm: {"seeds": a["seeds"], "sd_log": a["sd"]} for arm, a in arm_spreads(metrics, metric)[0].items()}


def power_table(arms: dict[str, dict], *, alpha: float, m: int, target: float, ratios, margin_ratio: float,
                correlation: float, seeds: int, spread: str = "max") -> dict:
    """Seeds per arm for a paired test of each ratio at alpha/m with power `target`, seeds for TOST at the
    margin, and what `seeds` seeds detect; from the per-arm sd of log(metric): the largest (spread="max",
    conservative) or pooled over the arms (spread="pooled")."""
    if not arms:
        raise ValueError("no arm with 2 or more seeds to take a spread from")
    pooled = pooled_sd([(a["seeds"] - 1, a["sd_log"]) for a in arms.values()])
    used = max(a["sd_log"] for a in arms.values()) if spread == "max" else pooled
    sd = sd_of_differences(used, used, correlation)
    a = alpha / m
    return {"pooled_sd_log": pooled, "spread": spread, "sd_log_used": used, "sd_of_log_differences": sd, "correlation": correlation, "alpha": alpha,
            "m": m, "alpha_per_test": a, "power": target,
            "seeds_per_ratio": {f"{r:g}": seeds_for(math.log(r), sd, a, target) for r in ratios},
            "tost": {"margin_ratio": margin_ratio, "seeds": seeds_for_tost(math.log(margin_ratio), sd, a, target)},
            "with_seeds": {"seeds": seeds, "detectable_ratio": detectable_ratio(seeds, sd, a, target),
                           "tost_power_at_margin": tost_power(seeds, math.log(margin_ratio), sd, a)},
            "arms": arms}


def power_markdown(t: dict, source: str, metric: str) -> str:
    spread = ", ".join(f"{k}: {v['sd_log']:.3f} over {v['seeds']}" for k, v in t["arms"].items())
    lines = [f"# Seeds for a paired comparison of log {metric}", "",
             f"Spread from `{source}`: per-arm sd of log {metric} over seeds ({spread}); used: "
             f"{'the largest' if t['spread'] == 'max' else 'pooled'}, {t['sd_log_used']:.4f}; "
             f"correlation between arms across seeds {t['correlation']:g}, so the sd of a per-seed log difference "
             f"is {t['sd_of_log_differences']:.4f}. Two-sided paired t-test at alpha {t['alpha']:g}/{t['m']} = "
             f"{t['alpha_per_test']:.4f}, power {t['power']:g}.", "",
             "| true ratio of the two arms' geometric means | seeds per arm (paired) |", "|---|---|"]
    for r, n in t["seeds_per_ratio"].items():
        lines.append(f"| {r} | {n if n is not None else '> 1000'} |")
    w, e = t["with_seeds"], t["tost"]
    lines += ["", f"Equivalence (TOST) within a ratio of {e['margin_ratio']:g} when the arms are equal: "
                  f"{e['seeds']} seeds per arm.",
              f"With {w['seeds']} seeds: the smallest ratio detected at this power is {w['detectable_ratio']:.3f}; "
              f"TOST at {e['margin_ratio']:g} has power {w['tost_power_at_margin']:.2f} when the arms are equal.", ""]
    return "\n".join(lines)


def power_job(args):
    import json
    from pathlib import Path

    metrics = json.loads(Path(args.spread).read_text())
    t = power_table(arm_log_sds(metrics, args.metric), alpha=args.alpha, m=args.m, target=args.power,
                    ratios=args.ratios, margin_ratio=args.margin, correlation=args.correlation, seeds=args.seeds,
                    spread=args.pool)
    text = power_markdown(t, args.spread, args.metric)
    if args.out:
        from pra.io import write_json, write_text

        write_text(Path(args.out).with_suffix(".md"), text)
        write_json(Path(args.out).with_suffix(".json"), t)
    print(text)
