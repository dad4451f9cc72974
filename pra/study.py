"""A registered study run in blocks: the study file, one block's run and record, and the pooling of blocks.

A study file (YAML, e.g. experiments/settle2/study.yaml) registers, before any of its measurements, the blocks
of a long experiment: each block trains every variant of one ablation of one experiment file for a range of
seeds (all arms together, never one arm across seeds), within a registered time budget, under a registered
hash of the result-determining code (`python -m pra study-hash`). `python -m pra block` runs one block: it
refuses to start when the study file or the block's experiment file is not committed as it is, or when the
code differs from the registered hash; then Snakemake builds the block's runs, and the block's record is
written: block.json (the commit, torch version, CPU model, measured matmul peak, wall time) and one small
JSON per run (metrics, code hashes, seconds, the realised input error). Those records are what is committed;
the analysis pools blocks only where their code hash and experiment file agree (`pool`).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from pra.config import yamlfile
from pra.runtime import cpu_kernels, cpu_model
from pra.typed import ConfigError, build, opt

# the commands whose code decides a run's numbers (data, features, training, sampling, metrics, diagnostics)
RESULT_COMMANDS = ("export", "prepare", "train-classifier", "carry-classifier", "reference", "train", "sample",
                   "gather", "evaluate", "sweep-guidance", "evaluate-snapshots", "gap", "accumulate", "approximate")
RUN_METRICS = ("fid", "kid", "is", "precision", "recall", "class_accuracy")
MAX_BLOCKS = 8


@dataclass(frozen=True)
class BlockConfig:
    id: str = opt("", "Block name (a folder of the study's records).")
    experiment: str = opt("", "The experiment file whose ablation the block runs (relative to the repository).")
    ablation: str = opt("", "The ablation of that experiment: every one of its variants is trained.")
    seeds: list[int] = opt([], "The block's seeds (a subset of the ablation's seeds).")
    phase: str = opt("measurement", "'pilot' (phase 0: informs the registration, never tested) or "
                     "'measurement' (pooled into the registered analysis).", choices=["pilot", "measurement"])
    purpose: str = opt("", "What the block is for, in words.")
    budget_hours: float = opt(2.0, "Registered wall-time estimate on the slowest machine the study is sized "
                              "for (see the study's cost note).", exclusive_minimum=0.0)


@dataclass(frozen=True)
class StudyConfig:
    name: str = opt("study", "Study name.")
    code_hash: str = opt("", "Hash of the result-determining code (`python -m pra study-hash`) the blocks must "
                         "run under.")
    max_block_hours: float = opt(2.0, "Cap on every block's budget_hours.", exclusive_minimum=0.0)
    records: str = opt("reports/study/blocks", "Where each block's record is written (committed).")
    blocks: list[BlockConfig] = field(default_factory=list, metadata={"help": "The registered blocks, in order."})
    deviations: list[str] = opt([], "Every change to the registration after it was first committed (a withdrawn "
                                "block, a changed plan), each with its reason; the summaries print them.")


def load_study(path: str | Path) -> StudyConfig:
    """The study file, validated (names the offending key)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such study file")
    raw = yamlfile.read(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    study = build(StudyConfig, raw, ())
    ids = [b.id for b in study.blocks]
    if len(ids) > MAX_BLOCKS:
        raise ConfigError(f"{path}: key 'blocks': at most {MAX_BLOCKS} blocks, got {len(ids)}")
    if len(set(ids)) != len(ids) or "" in ids:
        raise ConfigError(f"{path}: key 'blocks': every block needs a distinct id, got {ids}")
    for i, b in enumerate(study.blocks):
        if b.budget_hours > study.max_block_hours:
            raise ConfigError(f"{path}: key 'blocks[{i}].budget_hours': {b.budget_hours} exceeds max_block_hours "
                              f"{study.max_block_hours}")
        if not b.seeds or len(set(b.seeds)) != len(b.seeds):
            raise ConfigError(f"{path}: key 'blocks[{i}].seeds': a non-empty list of distinct seeds")
    return study


def result_code_hash() -> str:
    """One hash over the code of every result-determining command (pra.codehash, per command)."""
    from pra.codehash import code_hash

    lines = "".join(f"{c}={code_hash(c)}\n" for c in RESULT_COMMANDS)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def block_of(study: StudyConfig, block_id: str) -> BlockConfig:
    for b in study.blocks:
        if b.id == block_id:
            return b
    raise ConfigError(f"no block {block_id!r} in study {study.name!r} (blocks: {[b.id for b in study.blocks]})")


def block_runs(block: BlockConfig, root: Path):
    """(experiment config, ablation, [(variant, run)]) of a block; refuses seeds outside the ablation and
    ablations that tune (a block runs registered doses, not a tuning)."""
    from pra.config import load
    from pra.model.scales import SCALES
    from pra.plan import ablation_runs, tuned_variants

    cfg = load(root / "config/config.yaml", root / block.experiment, scales=SCALES)  # as the Snakefile does
    by_name = {a.name: a for a in cfg.ablations}
    if block.ablation not in by_name:
        raise ConfigError(f"block {block.id!r}: no ablation {block.ablation!r} in {block.experiment} "
                          f"({sorted(by_name)})")
    a = by_name[block.ablation]
    if tuned_variants(a):
        raise ConfigError(f"block {block.id!r}: ablation {a.name!r} tunes a noise knob; a block runs registered "
                          f"doses (set them as variant overrides)")
    outside = sorted(set(block.seeds) - set(a.seeds))
    if outside:
        raise ConfigError(f"block {block.id!r}: seeds {outside} are not seeds of ablation {a.name!r} ({a.seeds})")
    runs = [(v, r) for v, r in ablation_runs(a) if r.seed in block.seeds]
    return cfg, a, runs


def run_files(cfg, a) -> list[str]:
    """The files of one run a block builds (relative to the run folder)."""
    names = ["train.json", "eval.json"]
    if cfg.evaluate.snapshot_every:
        names.append("along_training.json")
    if a.diagnostics:
        names += ["gap.json", "accumulation.json", "approximation.json"]
    return names


def _git(root: Path, *args: str) -> str:
    p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        raise ConfigError(f"git {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout.strip()


def check_registered(study_path: Path, study: StudyConfig, block: BlockConfig, root: Path) -> dict:
    """The registration a block runs under: the study file and the block's experiment file committed as they
    are, the code equal to the registered hash. Returns what the record states about it."""
    files = [study_path.resolve().relative_to(root.resolve()).as_posix(), block.experiment]
    dirty = _git(root, "status", "--porcelain", "--", *files, *BASE_FILES)
    if dirty:
        raise ConfigError(f"block {block.id!r}: register first: commit {files + list(BASE_FILES)} as they are "
                          f"(uncommitted: {dirty})")
    if not study.code_hash:
        raise ConfigError(f"{study_path}: key 'code_hash': empty; register the code (`python -m pra study-hash`)")
    current = result_code_hash()
    if current != study.code_hash:
        raise ConfigError(f"block {block.id!r}: the result-determining code hash is {current}, the study registered "
                          f"{study.code_hash}; run the registered code, or register the change as a deviation")
    return {"study_file": files[0], "study_commit": _git(root, "log", "-n", "1", "--format=%H", "--", files[0]),
            "experiment_commit": _git(root, "log", "-n", "1", "--format=%H", "--", block.experiment),
            "code_hash": current, "command_hashes": command_hashes(),
            "base_config_sha256": hashlib.sha256((root / "config/config.yaml").read_bytes()).hexdigest()}


# what a block's runs also depend on besides the study and experiment files: committed as they are
BASE_FILES = ("config/config.yaml", "Snakefile", "workflow")
# the per-run record's job hashes, by the command that wrote them
RECORDED_COMMANDS = {"train": "train", "evaluate": "evaluate", "gap": "gap", "accumulate": "accumulate",
                     "approximate": "approximate"}


def command_hashes() -> dict[str, str]:
    from pra.codehash import code_hash

    return {c: code_hash(c) for c in RESULT_COMMANDS}


def off_registration(run_records: list[dict], registered: dict[str, str]) -> list[str]:
    """Runs whose jobs recorded a code hash other than the registered command's (a run built earlier, or
    code changed while the block ran): '<variant> s<seed> <job>' each."""
    bad = []
    for r in run_records:
        for job, h in r["code_hash"].items():
            if h is not None and h != registered.get(RECORDED_COMMANDS.get(job, job)):
                bad.append(f"{r['variant']} s{r['seed']} {job}")
    return bad


def _tsv_seconds(path: Path) -> float | None:
    """The wall seconds of a Snakemake benchmark file (its `s` column), or None."""
    if not path.exists():
        return None
    head, *rows = path.read_text().splitlines()
    cols = head.split("\t")
    return sum(float(r.split("\t")[cols.index("s")]) for r in rows) if rows else None


def run_record(run_dir: Path, variant, run, names: list[str]) -> dict:
    """One run's small, committed result: its metrics (those of eval.json and, where the ablation runs them,
    the diagnostics' per-run scalars, as pra.ablation reads them), code hashes, seconds and realised input
    error."""
    from pra.ablation import variant_metrics

    train = json.loads((run_dir / "train.json").read_text())
    ev = json.loads((run_dir / "eval.json").read_text())
    diagnostics = "gap.json" in names
    log = [json.loads(ln) for ln in (run_dir / "train_log.jsonl").read_text().splitlines() if ln.strip()]
    tail = log[len(log) - max(1, len(log) // 5):]  # the last fifth of training
    mean = lambda k: (sum(r[k] for r in tail) / len(tail)) if tail and all(k in r for r in tail) else None  # noqa: E731
    sample_s = [s for s in (_tsv_seconds(p) for p in sorted((run_dir / "samples").glob("*.benchmark.tsv")))
                if s is not None]
    rec = {"variant": variant.name, "method": run.method, "overrides": variant.overrides, "run_id": run.variant,
           "scale": run.scale, "seed": run.seed, "steps": train["steps"],
           "metrics": variant_metrics(run_dir, probe=False, diagnostics=diagnostics),
           "code_hash": {"train": train.get("code_hash"), "evaluate": ev.get("code_hash")},
           "train_seconds": train["seconds"], "seconds_per_step": train["seconds"] / max(1, train["steps"]),
           "sample_seconds": sum(sample_s) if sample_s else None,
           "evaluate_seconds": _tsv_seconds(run_dir / "evaluate.benchmark.tsv"),
           "input_mse_last_fifth": mean("input_mse"), "loss_last_fifth": mean("loss"),
           "sampling": ev.get("sampling")}
    if diagnostics:
        rec["code_hash"].update({k: json.loads((run_dir / f"{f}.json").read_text()).get("code_hash")
                                 for k, f in (("gap", "gap"), ("accumulate", "accumulation"),
                                              ("approximate", "approximation"))})
    if "along_training.json" in names:
        rec["along_training"] = json.loads((run_dir / "along_training.json").read_text()).get("rows")
    return rec


def earlier_scorers(study: StudyConfig, block: BlockConfig, root: Path) -> dict[str, str]:
    """The feature networks the study's recorded measurement blocks of the same experiment (this block's own
    earlier record included) scored with: {block id: feature_sha256} (records from before the digests were kept
    are left out)."""
    others = {b.id for b in study.blocks if b.phase == "measurement" and b.experiment == block.experiment}
    return {r["block"]["id"]: r["scorer"]["feature_sha256"] for r in load_records(root / study.records)
            if r["block"]["id"] in others and (r.get("scorer") or {}).get("feature_sha256")}


def check_scorer(block: BlockConfig, digest: str, earlier: dict[str, str], new_classifier: str | None,
                 kind: str = "classifier") -> bool:
    """Whether a measurement block's feature network (its digest) is one its study's earlier blocks of the same
    experiment did not score with; refuses such a block unless the change is accepted with a reason. A digest
    that any earlier block scored with passes (after an accepted change, both are the study's)."""
    if not earlier or digest in set(earlier.values()) or block.phase != "measurement":
        return False
    if not new_classifier:
        raise SystemExit(f"block {block.id!r}: its feature network (sha256 {digest[:16]}) differs from the one blocks "
                         f"{sorted(earlier)} scored with ({sorted({d[:16] for d in earlier.values()})}): its FIDs "
                         "would be measured in another feature space. "
                         + ("Carry that classifier (--classifier <its folder>, e.g. results/<experiment>/classifier "
                            "from the machine that ran them)" if kind == "classifier" else
                            "Use the Inception weights file they used (evaluate.inception_weights)")
                         + ", or accept the change with --new-classifier REASON; no run was trained")
    return True


def npz_sha256(path: Path) -> str:
    """Digest of an npz's arrays (names, dtypes, shapes, values), not of its zip container (which holds times)."""
    import numpy as np

    h = hashlib.sha256()
    with np.load(path) as z:
        for k in sorted(z.files):
            a = np.ascontiguousarray(z[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def feature_digest(cfg, results: Path) -> str:
    """The identity of the feature network a run is scored with: the Inception weights file's digest, or the
    digest of the weights of the classifier in results/classifier (the file the evaluations load)."""
    if cfg.evaluate.inception_weights:
        path = Path(cfg.evaluate.inception_weights).expanduser()
        path = path if path.is_absolute() else results.parent.parent / path  # relative to the repository
        from pra.evaluate.inception_file import check_inception_weights

        try:
            return check_inception_weights(path, cfg.evaluate.inception_sha256_prefix)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from None
    from pra.evaluate.classifier import load_classifier, weights_sha256

    return weights_sha256(load_classifier(results / "classifier" / "classifier.pt"))


def scorer_record(cfg, results: Path, new_classifier: str | None) -> dict:
    """What a block's runs were scored with: the feature network's kind and digest (for the classifier also its
    origin and the digest of the images it was trained on), the reference statistics' content digest."""
    ref = results / "reference" / "reference.npz"
    out = {"feature_network": "inception" if cfg.evaluate.inception_weights else "classifier",
           "feature_sha256": feature_digest(cfg, results),
           "reference_sha256": npz_sha256(ref) if ref.exists() else None}
    if not cfg.evaluate.inception_weights:
        info = json.loads((results / "classifier" / "classifier.json").read_text())
        out.update(classifier_source=info.get("source"), classifier_origin=info.get("origin", info.get("source")),
                   data_sha256=info.get("data_sha256"))
    if new_classifier:
        out["new_classifier_reason"] = new_classifier
    return out


def carried_classifier_config(root: Path, block: BlockConfig, cfg, classifier: str | None) -> str | None:
    """The extra config file that makes the block's Snakemake run score with a carried classifier (written under
    .snakemake/, where jobs on other nodes see it too); checks --classifier first. None without one. A results
    folder that holds a carried classifier needs --classifier again (Snakemake would otherwise train one here
    and score in another feature space)."""
    own = root / "results" / cfg.name / "classifier"
    if not classifier and cfg.evaluate.inception_weights:
        return None
    if not classifier:
        info = own / "classifier.json"
        src = json.loads(info.read_text()).get("source", "") if info.exists() else ""
        if src.startswith("carried from"):
            raise ConfigError(f"block {block.id!r}: {own} holds a classifier {src}; give --classifier again (or "
                              "delete that folder to train one here)")
        return None
    if cfg.evaluate.inception_weights:
        raise ConfigError(f"--classifier: {block.experiment} scores with Inception (evaluate.inception_weights); "
                          "a classifier is not used")
    src = Path(classifier).resolve()
    absent = [n for n in ("classifier.pt", "classifier.json") if not (src / n).exists()]
    if absent:
        raise ConfigError(f"--classifier: {classifier} has no {' or '.join(absent)} (a results/<experiment>/"
                          "classifier folder from the machine that ran the study's first block)")
    if src == own.resolve():
        raise ConfigError(f"--classifier: {classifier} is this block's own classifier folder; carry a copy kept "
                          "elsewhere")
    path = root / ".snakemake" / "pra-block" / f"{block.id}-classifier.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"evaluate": {"classifier_dir": str(src)}}))
    return str(path)


def run_block(study_path: str | Path, block_id: str, cores: int, root: Path | None = None,
              snakemake_args: list[str] | None = None, classifier: str | None = None,
              new_classifier: str | None = None) -> dict:
    """Run one registered block and write its record; returns block.json's content. classifier: a classifier
    folder to score with (evaluate.classifier_dir); new_classifier: the reason to accept a feature network other
    than the study's earlier blocks' (check_scorer)."""
    from pra.bench.common import matmul_peak
    from pra.io import write_json
    from pra.plan import path_of

    root = Path(root or os.getcwd())
    study_path = Path(study_path)
    study = load_study(study_path)
    block = block_of(study, block_id)
    registration = check_registered(study_path, study, block, root)
    cfg, a, runs = block_runs(block, root)
    results = Path("results") / cfg.name
    names = run_files(cfg, a)
    targets = [str(path_of(results, r) / n) for _, r in runs for n in names]
    present = sum((root / t).exists() for t in targets)
    out = root / study.records / block.id
    earlier = _invocations(out / "block.json")
    head = _git(root, "rev-parse", "HEAD")  # the commit the jobs start from (later commits do not count)
    extra = carried_classifier_config(root, block, cfg, classifier)
    started = time.time()

    def snakemake(targets: list[str]) -> None:
        cmd = ["snakemake", *targets, "--cores", str(cores), *(snakemake_args or []), "--configfile",
               block.experiment, *([extra] if extra else [])]
        print(" ".join(cmd), file=sys.stderr, flush=True)
        p = subprocess.run(cmd, cwd=root)
        if p.returncode != 0:
            raise SystemExit(f"block {block.id!r}: snakemake failed ({p.returncode}); rerun the same command to resume")

    # the feature space first: a block in another one stops before any run is trained
    scored_before = earlier_scorers(study, block, root)
    if cfg.evaluate.inception_weights:
        changed = check_scorer(block, feature_digest(cfg, root / results), scored_before, new_classifier,
                               kind="inception")
    else:
        if classifier:  # checked against the prepared data before Snakemake replaces anything with it
            from pra.evaluate.classifier import check_carry

            snakemake([str(results / "data" / "manifest.json")])
            try:
                check_carry(classifier, root / results / "data", key="--classifier")
            except Exception as e:  # noqa: BLE001 -- whatever makes the folder unusable: named, nothing replaced
                raise ConfigError(str(e) if isinstance(e, (OSError, ValueError)) else
                                  f"--classifier: {classifier}: {type(e).__name__}: {e}") from e
        snakemake([str(results / "classifier" / "classifier.json")])
        changed = check_scorer(block, feature_digest(cfg, root / results), scored_before, new_classifier)
    if new_classifier and not changed:
        print(f"block {block.id!r}: --new-classifier not recorded: the feature network is one the study's earlier "
              "blocks scored with (or the first)", file=sys.stderr)
    snakemake(targets)
    wall = time.time() - started
    if result_code_hash() != registration["code_hash"]:
        raise SystemExit(f"block {block.id!r}: the result-determining code changed while the block ran "
                         f"({registration['code_hash']} -> {result_code_hash()}); no record written")
    records = [(r, run_record(root / path_of(results, r), v, r, names)) for v, r in runs]
    bad = off_registration([rec for _, rec in records], registration["command_hashes"])
    if bad:
        raise SystemExit(f"block {block.id!r}: runs built by other code than the registered: {bad}; remove their "
                         f"outputs and rerun the block; no record written")
    for r, rec in records:
        write_json(out / "runs" / f"{r.variant}__{r.method}__s{r.seed}.json", rec)
    import torch

    record = {"study": study.name, "block": asdict(block), "registration": registration,
              "head_commit": head,
              "experiment_sha256": hashlib.sha256((root / block.experiment).read_bytes()).hexdigest(),
              "experiment_name": cfg.name, "ablation": a.name, "variants": [v.name for v in a.variants],
              "runs": len(runs), "targets": len(targets),
              "scorer": scorer_record(cfg, root / results, new_classifier if changed else None)}
    this = {"head_commit": record["head_commit"], "targets_present_before": present, "wall_seconds": wall,
            "cores": cores, "classifier_dir": str(Path(classifier).resolve()) if classifier else None,
            "cpu_model": cpu_model(), "cpu_kernels": cpu_kernels(), "cpu_count": os.cpu_count(),
            "matmul_gflops_1thread": matmul_peak(1, reps=5) / 1e9, "torch": torch.__version__,
            "python": platform.python_version(), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    # every invocation (a resumed block has several: their wall times add up), the last one's machine on top
    record.update({k: this[k] for k in ("cpu_model", "matmul_gflops_1thread", "torch")},
                  invocations=earlier + [this], wall_seconds=sum(i["wall_seconds"] for i in earlier + [this]))
    write_json(out / "block.json", record)
    return record


INVOCATION_KEYS = ("head_commit", "targets_present_before", "wall_seconds", "cores", "classifier_dir", "cpu_model",
                   "cpu_count", "matmul_gflops_1thread", "torch", "python", "finished_utc")


def _invocations(path: Path) -> list[dict]:
    """The earlier invocations of a block from its block.json (none if it has not run)."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    if "invocations" in old:
        return old["invocations"]
    return [{k: old.get(k) for k in INVOCATION_KEYS}]  # a record written before invocations were kept


def load_records(records_dir: str | Path) -> list[dict]:
    """Every recorded block under a study's records folder, each with its runs."""
    out = []
    for bj in sorted(Path(records_dir).glob("*/block.json")):
        rec = json.loads(bj.read_text())
        rec["run_records"] = [json.loads(p.read_text()) for p in sorted((bj.parent / "runs").glob("*.json"))]
        out.append(rec)
    return out


def pool(blocks: list[dict]) -> list[dict]:
    """The runs of several measurement blocks of one experiment, pooled only where they ran the same
    result-determining code, the same experiment and base config files and the same ablation: raises ValueError
    naming the blocks otherwise (a rerun under other code is another study, or a registered deviation analysed
    apart). Pilot blocks are never pooled."""
    if not blocks:
        return []
    pilots = [b["block"]["id"] for b in blocks if b["block"].get("phase") == "pilot"]
    if pilots:
        raise ValueError(f"blocks {pilots} are pilots (phase 0): they inform the registration and are never "
                         f"pooled into the registered analysis")
    keys = {(b["registration"]["code_hash"], b["experiment_sha256"], b["registration"].get("base_config_sha256"),
             b.get("ablation")) for b in blocks}
    train_hashes = {r["code_hash"]["train"] for b in blocks for r in b["run_records"]}
    if len(keys) > 1 or len(train_hashes) > 1:
        desc = [(b["block"]["id"], b["registration"]["code_hash"], b["experiment_sha256"][:12]) for b in blocks]
        raise ValueError(f"blocks ran different code or experiment files and cannot be pooled: {desc}; "
                         f"training code hashes {sorted(map(str, train_hashes))}")
    seen = {}
    for b in blocks:
        for r in b["run_records"]:
            key = (r["variant"], r["seed"])
            if key in seen:
                raise ValueError(f"run {key} is recorded by blocks {seen[key]!r} and {b['block']['id']!r}")
            seen[key] = b["block"]["id"]
    return [r for b in blocks for r in b["run_records"]]


# ---- the command-line jobs ---------------------------------------------------------------------
def study_hash_job(args):
    print(result_code_hash())


def block_job(args):
    rec = run_block(args.study, args.block, args.cores, classifier=args.classifier,
                    new_classifier=args.new_classifier)
    print(json.dumps({k: rec[k] for k in ("study", "runs", "wall_seconds", "head_commit", "cpu_model",
                                          "matmul_gflops_1thread")}))
