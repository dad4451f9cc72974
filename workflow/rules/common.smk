# Paths of every artifact are functions of (experiment, scale, method, seed).
RESULTS = f"results/{EXP.name}"
DATA = f"{RESULTS}/data"
RUN = RESULTS + "/runs/{scale}/{method}/s{seed}"
REPORTS = EXP.reports_dir


wildcard_constraints:
    scale=r"[A-Za-z0-9_.-]+",
    method=r"[a-z_]+",
    seed=r"\d+",


def cfg_json(*keys):
    """The config keys a rule's command reads; passed as params so that only they trigger reruns."""
    return EXP.subset_json(*keys)


def runs():
    return [dict(scale=s, method=m, seed=r) for s in EXP.scales for m in EXP.methods for r in EXP.seeds]
