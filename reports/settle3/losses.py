"""Per-run training losses of settle3's block k1 at the end of training, and their range per arm.

    python reports/settle3/losses.py results/settle3-digits reports/settle3/losses

Reads each run's `train.json` (`final`: the mean over the last logging window, `train.log_every` = 50 steps)
under the block's results directory and writes `<out>.json` (one entry per run: arm, seed, every loss
component, the realised input error) and `<out>.md` (min-max per arm). The per-run records under
`reports/settle3/blocks/k1/runs/` carry the total loss and the input error; this adds the components.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ARMS = {  # the ablation's variants and their run directories (experiments/settle3/digits_context.yaml)
    "latent_tf": "latent_tf/base",
    "pra_t1_tfctx": "pra/method.recon_context=_teacher_forced_+method.t_min=1.0",
    "pra_t1": "pra/method.t_min=1.0",
}
KEYS = ("loss", "loss_head", "loss_recon", "loss_moment", "input_mse", "grad_norm")


def collect(results: Path) -> list[dict]:
    rows = []
    for arm, sub in ARMS.items():
        paths = sorted((results / "runs" / "tiny-S" / sub).glob("s*/train.json"))
        if not paths:
            raise SystemExit(f"no train.json under {results / 'runs' / 'tiny-S' / sub}: run the block first")
        for p in paths:
            d = json.loads(p.read_text())
            rows.append({"arm": arm, "seed": d["seed"], "steps": d["steps"], "code_hash": d["code_hash"],
                         **{k: d["final"][k] for k in KEYS}})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| arm | seeds | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for arm in ARMS:
        r = [x for x in rows if x["arm"] == arm]
        cells = [f"{min(x[k] for x in r):.3g}-{max(x[k] for x in r):.3g}" for k in KEYS]
        lines.append(f"| {arm} | {len(r)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    results, out = Path(argv[0]), Path(argv[1])
    rows = collect(results)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    text = ("Training losses at the end of training (mean over the last 50 steps), min-max over seeds, from each "
            f"run's train.json under `{results}` (`python reports/settle3/losses.py {results} {out}`):\n\n"
            + table(rows))
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
