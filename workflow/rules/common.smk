import os

import json
import shlex

from pra import plan
from pra.jobconfig import TRAIN_EXECUTION, reads
from pra.codehash import code_hash
from pra.config.sections import EMBEDDED_SOURCES
from pra.typed import field_meta
from pra.plan import variant_id, variant_overrides

# Paths of every artifact are functions of (experiment, scale, method, seed).
RESULTS = f"results/{EXP.name}"
DATA = f"{RESULTS}/data"
MANIFEST = f"{DATA}/manifest.json"  # written last by prepare: the data folder is complete
RUN = f"{RESULTS}/{plan.RUN_DIR}"  # wildcards: scale, method, variant, seed
VARIANTS = variant_overrides(EXP)  # variant id -> config overrides ('base' = none)
REPORTS = EXP.reports_dir
# The execution settings (pra.jobconfig.EXECUTION: the speed section, train.ckpt_every, train.threads) reach the
# train and sample commands as the environment variable PRA_SPEED_JSON, not through their params: they must not
# rerun finished jobs. `envvars` hands it to jobs on other nodes (Slurm) too.
os.environ["PRA_SPEED_JSON"] = EXP.subset_json("speed", *TRAIN_EXECUTION)


envvars:
    "PRA_SPEED_JSON",



wildcard_constraints:
    scale=r"[A-Za-z0-9_.-]+",
    method=r"[a-z_]+",
    seed=r"\d+",
    shard=r"\d+",
    variant=r"[A-Za-z0-9._=+-]+",


# The software of every rule: the dependencies come from this environment (or the activated venv),
# the `pra` package from this repository (put first on PYTHONPATH by the shell prefix below), so jobs
# always run the checked-out code.
ENV = "../envs/pra.yaml"
shell.prefix(f'export PYTHONPATH="{workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')


def res(kind, key):
    """A resource of a rule: per scale (resources.scale_overrides); runtimes double with every attempt."""

    def value(wildcards, attempt):
        scale = getattr(wildcards, "scale", None)
        v = EXP.resource(scale, f"{kind}_{key}") if scale else getattr(EXP.resources, f"{kind}_{key}")
        return v * 2 ** (attempt - 1) if key == "runtime" else v

    return value


def job_resources(kind):
    """What a job of `kind` (train, sample or eval) asks the scheduler for: GPUs, memory, runtime."""
    return dict(gpu=res(kind, "gpus"), mem_mb=res(kind, "mem_mb"), runtime=res(kind, "runtime"))


def launcher(wildcards, resources):
    """torchrun (its agent leaves SIGUSR1 to the trainers: pra/agent.py) with one process per GPU for
    multi-GPU jobs; plain python otherwise."""
    if resources.gpu > 1:
        return f"python -m pra torchrun --standalone --nproc_per_node={resources.gpu}"
    return "python"


def train_launcher(wildcards, resources):
    """Multi-node training (resources.train_nodes > 1): `python -m pra launch` execs srun with one torchrun
    per node inside the Slurm allocation (pra/launch.py). Single-node jobs use `launcher`."""
    nodes = EXP.resource(wildcards.scale, "train_nodes")
    if nodes <= 1:
        return launcher(wildcards, resources)
    per_node = max(EXP.resource(wildcards.scale, "train_gpus"), 1)
    return f"python -m pra launch --nodes {nodes} --procs-per-node {per_node} --"


def train_node_resources():
    """Extra Slurm requests of the train rule when some scale trains on several nodes. The executor
    plugin's `mpi` mode leaves the job's shell (which calls srun itself) to run in the batch step; GPUs are
    then asked per node (gres) rather than per job."""
    gpus, nodes = res("train", "gpus"), res("train", "nodes")
    if all(EXP.resource(r.scale, "train_nodes") == 1 for r in plan.runs(EXP)):
        return {"gpu": gpus}

    def multi(w):
        return nodes(w, 1) > 1

    return {
        "gpu": lambda w: 0 if multi(w) else gpus(w, 1),
        "gres": lambda w: f"gpu:{gpus(w, 1)}" if multi(w) and gpus(w, 1) > 0 else "",
        "nodes": nodes,
        "tasks": nodes,
        "tasks_per_gpu": 0,
        "mpi": lambda w: "srun" if multi(w) else "",
    }


def out_dir(output_file):
    """params helper: the folder of an output file."""
    return lambda wildcards, output: os.path.dirname(output[output_file])


def job_cfg(command):
    """The config keys the job of `command` reads (pra.__main__.READS), as JSON: a rule passes exactly these,
    as a param, so that only they make Snakemake rerun it."""
    return EXP.subset_json(*reads(command))


def code(command):
    """The hash of the code the job of `command` runs (pra.codehash): a param, so that editing a module reruns
    exactly the jobs that run it."""
    return code_hash(command)


_RUN_CFG = {}


def run_cfg(wildcards):
    """The config of one run: the experiment with its variant's overrides."""
    v = wildcards.variant
    if v not in _RUN_CFG:
        _RUN_CFG[v] = EXP.with_overrides(VARIANTS[v])
    return _RUN_CFG[v]


def run_job_cfg(command):
    """job_cfg of one run's config (its variant's overrides applied)."""
    return lambda wildcards: run_cfg(wildcards).subset_json(*reads(command))


def runs():
    return [dict(scale=r.scale, method=r.method, variant=r.variant, seed=r.seed) for r in plan.runs(EXP)]


def for_runs(pattern, selected=None):
    """pattern formatted for every run (or the given run dicts)."""
    return [pattern.format(**r) for r in (selected if selected is not None else runs())]


ABLATIONS = {a.name: a for a in EXP.ablations}


def tuning_file(a):
    """The tuning's choices of ablation a (a checkpoint: the runs that follow depend on it); [] if untuned."""
    return [str(plan.tuning_path(RESULTS, a))] if plan.tuned_variants(a) else []


def choices_of(a):
    if not plan.tuned_variants(a):
        return None
    with open(checkpoints.tune.get(ablation=a.name).output[0]) as fh:
        return json.load(fh)


def ablation_runs(a):
    """The measurement runs of ablation a (after its tuning, if any: call only from input functions)."""
    return [dict(scale=r.scale, method=r.method, variant=r.variant, seed=r.seed)
            for _, r in plan.ablation_runs(a, choices_of(a))]


def tuning_inputs(wildcards):
    a = ABLATIONS[wildcards.ablation]
    return for_runs(os.path.join(RUN, "eval.json"),
                    [dict(scale=r.scale, method=r.method, variant=r.variant, seed=r.seed)
                     for _, _, r in plan.tuning_runs(a)])


def report_diagnostics(wildcards):
    """The diagnostics of every run of every diagnosed ablation (figures: the first seed; data: all), and the
    tuning choices (read by the report beside every run's files)."""
    out = []
    for a in EXP.ablations:
        out += tuning_file(a)
        if a.diagnostics:
            for name in ("gap.json", "accumulation.json", "approximation.json"):
                out += for_runs(os.path.join(RUN, name), ablation_runs(a))
    return list(dict.fromkeys(out))


def report_measurement_inputs(wildcards):
    """What the report reads of the tuned ablation variants' measurement runs (known after the tuning checkpoint),
    as of every other run: eval.json, the training log, the samples, and probe.json, along_training.json and
    guidance.json where the experiment makes them."""
    known = {tuple(r.values()) for r in runs()}
    names = ["eval.json", "train_log.jsonl", "samples.npz"] + (["probe.json"] if EXP.evaluate.probe else []) + \
        (["along_training.json"] if EXP.evaluate.snapshot_every else [])
    out = []
    for a in EXP.ablations:
        if plan.tuned_variants(a):
            extra = [r for r in ablation_runs(a) if tuple(r.values()) not in known]
            out += [f for name in names for f in for_runs(os.path.join(RUN, name), extra)]
            out += for_runs(os.path.join(RUN, "guidance.json"),
                            [r for r in extra if plan.sweeps_guidance(EXP, plan.Run(**r))])
    return list(dict.fromkeys(out))


# Feature space of the sample metrics: Inception (local weights) when evaluate.inception_weights is set,
# otherwise the classifier trained on this experiment's data.
USE_CLASSIFIER = not EXP.evaluate.inception_weights
CLASSIFIER = f"{RESULTS}/classifier/classifier.pt"
REFERENCE = f"{RESULTS}/reference/reference.npz"
# Local files the config names exist before any job starts (the jobs say where each comes from)
for _section, _key in (("evaluate", "inception_weights"), ("evaluate", "reference_stats"), ("resources", "container")):
    _path = getattr(getattr(EXP, _section), _key)
    if _path and not (_key == "container" and "://" in _path) and not os.path.exists(_path):  # docker://, oras://
        _help = field_meta(type(getattr(EXP, _section)), _key)["help"]
        raise WorkflowError(f"invalid configuration: {_section}.{_key}: {_path} does not exist ({_help})")
if EXP.evaluate.inception_weights:  # the published weights (by their digest), or a deliberate other file
    from pra.evaluate.inception_file import check_inception_weights

    try:
        check_inception_weights(EXP.evaluate.inception_weights, EXP.evaluate.inception_sha256_prefix)
    except (FileNotFoundError, ValueError) as _e:  # a folder given as the file; another file's digest
        raise WorkflowError(f"invalid configuration: {_e}")
# A classifier trained elsewhere on the same images (evaluate.classifier_dir) is checked and copied there instead
CARRIED_CLASSIFIER = os.path.realpath(EXP.evaluate.classifier_dir) if EXP.evaluate.classifier_dir else ""
CARRIED_CLASSIFIER_SHA256 = ""
if USE_CLASSIFIER and CARRIED_CLASSIFIER:
    _absent = [n for n in ("classifier.pt", "classifier.json") if not os.path.exists(f"{CARRIED_CLASSIFIER}/{n}")]
    if _absent:
        raise WorkflowError(f"invalid configuration: evaluate.classifier_dir: {EXP.evaluate.classifier_dir} has no "
                            f"{' or '.join(_absent)} (the folder `python -m pra train-classifier` writes, e.g. "
                            "results/<experiment>/classifier)")
    if CARRIED_CLASSIFIER == os.path.realpath(os.path.dirname(CLASSIFIER)):
        raise WorkflowError(f"invalid configuration: evaluate.classifier_dir: {EXP.evaluate.classifier_dir} is this "
                            "experiment's own classifier folder; carry a copy kept elsewhere")
    with open(f"{CARRIED_CLASSIFIER}/classifier.json") as _fh:
        CARRIED_CLASSIFIER_SHA256 = json.load(_fh).get("sha256", "")


def classifier_training_input(wildcards):
    """The data the classifier is trained on; refuses to replace a classifier that was carried here (training one
    here would rescore the experiment in another feature space): the user sets evaluate.classifier_dir again or
    deletes the folder."""
    info = f"{RESULTS}/classifier/classifier.json"
    if os.path.exists(info):
        with open(info) as fh:
            source = json.load(fh).get("source", "")
        if source.startswith("carried from"):
            raise WorkflowError(f"evaluate.classifier_dir: empty, but {RESULTS}/classifier holds a classifier "
                                f"{source}; set evaluate.classifier_dir to it again, or delete {RESULTS}/classifier "
                                "to train one here")
    return MANIFEST


def classifier_input(wildcards):
    return CLASSIFIER if USE_CLASSIFIER else []


def guidance_input(wildcards):
    """The guidance sweep's choice, where the run sweeps (sample.cfg_sweep); [] where cfg_scale is fixed."""
    if not run_cfg(wildcards).sample.cfg_sweep:
        return []
    w = wildcards
    return os.path.join(RUN, "guidance.json").format(scale=w.scale, method=w.method, variant=w.variant, seed=w.seed)


def guidance_flag(wildcards, input):
    return f"--guidance {input.guidance}" if input.guidance else ""


def classifier_flag(wildcards, input):
    return f"--classifier {input.classifier}" if input.classifier else ""


def ablation_inputs(wildcards):
    a = ABLATIONS[wildcards.ablation]
    names = ["eval.json", "train.json"]
    if EXP.evaluate.probe:
        names.append("probe.json")
    if a.diagnostics:
        names += ["gap.json", "accumulation.json", "approximation.json"]
    return tuning_file(a) + [f for name in names for f in for_runs(os.path.join(RUN, name), ablation_runs(a))]


from pra.report.build import report_files

_FILES = report_files(EXP)
REPORT_OUTPUTS = [f"{REPORTS}/{p}" for group in _FILES.values() for p in group]


_flag_for_report = report  # snakemake's report() marker (`report` opens a keyword at a line start)


def _caption(path, default):
    """The caption of a report file: workflow/report/figures/<kind>.rst for a figure of that kind (input_gap_settle
    -> input_gap), sample_grid.rst for a run's own grid; `default` otherwise."""
    name = os.path.splitext(os.path.basename(path))[0]
    if path.startswith("figures/samples/"):
        name = "sample_grid"
    for kind in sorted(os.listdir(os.path.join(workflow.basedir, "workflow/report/figures")), key=len, reverse=True):
        stem = kind[:-len(".rst")]
        if name == stem or name.startswith(f"{stem}_"):
            return f"../report/figures/{kind}"
    return default


def _reported(group, category, caption):
    return [
        _flag_for_report(f"{REPORTS}/{p}", category=category, caption=_caption(p, caption))
        for p in _FILES[group]
        if p.endswith((".png", ".md"))
    ] + [f"{REPORTS}/{p}" for p in _FILES[group] if not p.endswith((".png", ".md"))]
