"""Comparisons over training seeds: Welch's t-test, effect sizes with 95% intervals, Holm's correction.

A difference is called only when its Holm-adjusted p-value (over every comparison an ablation words)
is below alpha; otherwise it is "not clearly different", whatever the means say. Fewer than two seeds
on either side give no test at all.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Comparison:
    a: str
    b: str
    metric: str
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    diff: float                       # mean_a - mean_b
    ci: tuple[float, float] | None    # 95% Welch interval of the difference
    p: float | None                   # two-sided Welch p-value
    hedges_g: float | None
    p_holm: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def welch(a, b, *, names=("a", "b"), metric: str = "", level: float = 0.95) -> Comparison:
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    base = dict(a=names[0], b=names[1], metric=metric, mean_a=float(a.mean()), mean_b=float(b.mean()),
                n_a=len(a), n_b=len(b), diff=diff)
    if len(a) < 2 or len(b) < 2:
        return Comparison(**base, ci=None, p=None, hedges_g=None)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Comparison(**base, ci=(diff, diff), p=1.0 if diff == 0 else 0.0, hedges_g=None)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    q = float(stats.t.ppf((1 + level) / 2, df))
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    g = diff / pooled * (1 - 3 / (4 * (len(a) + len(b)) - 9)) if pooled > 0 else None
    return Comparison(**base, ci=(diff - q * se, diff + q * se), p=p, hedges_g=g)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and does not count towards the family)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def verdict(c: Comparison, lower_is_better: bool | None = True, alpha: float = 0.05) -> str:
    """One sentence, from the test: 'clearly lower/higher' only when the Holm-adjusted p < alpha."""
    values = f"{c.mean_a:.3g} vs {c.mean_b:.3g}"
    if c.p is None:
        return (f"no test: {min(c.n_a, c.n_b)} seed(s) on one side ({values}; "
                f"{'lower' if c.diff < 0 else 'higher'} in this single measurement, not a verdict)")
    p_used = c.p_holm if c.p_holm is not None else c.p
    ci = f"difference {c.diff:+.3g}, 95% CI [{c.ci[0]:+.3g}, {c.ci[1]:+.3g}]"
    g = f", Hedges' g {c.hedges_g:+.2f}" if c.hedges_g is not None else ""
    stat = f"{values}; {ci}{g}; Welch p = {c.p:.2g}, Holm-adjusted {p_used:.2g}; {c.n_a} and {c.n_b} seeds"
    if p_used < alpha:
        word = "clearly lower" if c.diff < 0 else "clearly higher"
        if lower_is_better is not None:
            better = (c.diff < 0) == lower_is_better
            word += f" ({'better' if better else 'worse'})"
        return f"{word} ({stat})"
    return f"not clearly different ({stat})"


def hypothesis_outcome(c: Comparison, expect: str, alpha: float = 0.05) -> str:
    """'supported' / 'contradicted' / 'not supported' for an expected direction (lower, higher, equal)."""
    if c.p is None:
        return "untested (fewer than 2 seeds)"
    p = c.p_holm if c.p_holm is not None else c.p
    called = p < alpha
    if expect == "equal":
        return ("contradicted: clearly different" if called else
                "not shown: not clearly different, which is not equality (equality needs an equivalence test "
                "against a declared margin, pra.paired.tost)")
    want_lower = expect == "lower"
    if not called:
        return "not supported: not clearly different"
    return "supported" if (c.diff < 0) == want_lower else "contradicted: clearly in the other direction"
