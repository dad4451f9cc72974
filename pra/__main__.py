"""`python -m pra <command>`: the one entry point every Snakemake rule calls.

A table from command to the job function beside its domain (`module:function`, imported only when
that command runs) and the command's arguments. Which config keys each job reads is pra.jobconfig's table:
the Snakemake rules pass a job exactly those (workflow/rules/common.smk: job_cfg), so that only they make
Snakemake rerun it; a job given --config-json without one of its keys stops naming it, rather than running
on a default. A job receives the parsed arguments, with the validated experiment config as `args.cfg` when
the command takes one.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from pra.jobconfig import READS, TRAIN_EXECUTION, missing_keys, reads


def arg(*flags, **kw):
    return flags, kw


class Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:  # stable: part of the commands' code hashes (pra.codehash)
        return self.name


CONFIG = Marker("CONFIG")  # --config / --config-json: the experiment config
OUT = arg("--out", required=True, help="where the command writes (a file or a folder, per command)")
DATA = arg("--data", required=True, help="the prepared data: results/<experiment>/data/manifest.json")
MODEL = arg("--model", required=True, help="a trained model.pt (rebuilt from the checkpoint alone)")
THREADS = arg("--threads", type=int, default=1, help="CPU threads of this process")
REFERENCE = arg("--reference", required=True, help="reference statistics (reference.npz)")
CLASSIFIER = arg("--classifier", help="the feature classifier.pt (none: Inception, evaluate.inception_weights)")
TRAIN_JSON = arg("--train-json", required=True, help="the run's train.json (its identity and code hash)")
TRACKING = arg("--tracking", help="tracking.json written by init-tracking")
ABLATION = arg("--name", required=True, help="the ablation's name")
RESULTS = arg("--results", required=True, help="the experiment's results folder")
NUM_CLASSES = arg("--num-classes", type=int, help="classes of the data (default: 1000 for imagefolder, else 10)")
EXPERIMENT = arg("--experiment", dest="config", nargs="+", help="alias of --config")
SPEED = arg("--speed-json", help="{\"speed\": {...}, \"train\": {\"ckpt_every\": .., \"threads\": ..}}: the execution "
            "settings as JSON (pra.jobconfig.EXECUTION, passed by the rules outside their rerun-triggering params); "
            "override the config's")


def diagnostic(*extra):
    return [CONFIG, MODEL, DATA, OUT,
            arg("--images", type=int, default=1000, help="held-out (val) images compared (at most)"),
            arg("--basis-images", type=int, default=500, help="train images the fixed PCA bases are fitted on"),
            arg("--subsamples", type=int, default=100, help="subsets (half size, without replacement) per interval"),
            THREADS, *extra]


COMMANDS = {  # name: (job, help, arguments)
    "export": ("pra.data.jobs:export", "export the embedded dataset of data.source (digits, mnist, mnist_mosaic) as "
               "an image folder", [CONFIG, OUT]),
    "prepare": ("pra.data.jobs:prepare", "raw image folder -> center-cropped uint8 shards",
                [CONFIG, arg("--root", help="raw image folder (default: data.root)"), OUT, THREADS]),
    "init-tracking": ("pra.tracking:init_job", "create the MLflow store and experiment once",
                      [RESULTS, arg("--experiment", required=True, help="the MLflow experiment's name"),
                       arg("--uri", help="tracking URI (default: MLFLOW_TRACKING_URI or <results>/mlflow.db)"), OUT]),
    "train-classifier": ("pra.evaluate.jobs:train_classifier", "train the evaluation feature classifier",
                         [CONFIG, DATA, OUT, THREADS]),
    "carry-classifier": ("pra.evaluate.jobs:carry_classifier", "score with a feature classifier trained elsewhere "
                         "on the same images (evaluate.classifier_dir): checked and copied with its info",
                         [arg("--source", required=True, help="folder with classifier.pt and classifier.json"),
                          DATA, OUT]),
    "reference": ("pra.evaluate.jobs:reference", "reference statistics of real images and the real-data floor",
                  [CONFIG, DATA, arg("--classifier", help="classifier.pt (feature space of the embedded data)"),
                   OUT, THREADS]),
    "train": ("pra.train:job", "train one (scale, method, seed)",
              [CONFIG, arg("--scale", required=True, help="a model scale (python -m pra scales)"),
               arg("--method", required=True, help="a training method (docs/method.md)"),
               arg("--seed", type=int, default=0, help="the training seed"), DATA, OUT, TRACKING, SPEED,
               arg("--quiet", action="store_true", help="no progress lines")]),
    "sample": ("pra.sample:sample_job", "class-balanced seeded samples -> npz",
               [CONFIG, MODEL, OUT, THREADS, SPEED,
                arg("--guidance", help="guidance.json of sweep-guidance: sample at its chosen scale"),
                arg("--shard", type=int, default=0, help="this job's shard of the samples"),
                arg("--num-shards", type=int, default=1, help="shards the samples are split into")]),
    "gather": ("pra.sample:gather_job", "sample shards -> one npz in a fixed shuffled order",
               [arg("--shards", nargs="+", required=True, help="the sample jobs' shard npz files"), OUT,
                arg("--png-dir", help="also write every sample as a PNG here")]),
    "evaluate": ("pra.evaluate.jobs:evaluate", "FID/IS/KID/precision/recall (+ class agreement) of a sample npz",
                 [CONFIG, arg("--samples", required=True, help="the gathered samples.npz"), REFERENCE, CLASSIFIER,
                  TRAIN_JSON, TRACKING, OUT, THREADS]),
    "sweep-guidance": ("pra.evaluate.jobs:sweep_guidance", "choose the guidance scale of a run on a proxy sample "
                       "(sample.cfg_sweep)", [CONFIG, MODEL, REFERENCE, CLASSIFIER, TRAIN_JSON, TRACKING, OUT, THREADS,
                                              SPEED]),
    "evaluate-snapshots": ("pra.evaluate.jobs:evaluate_snapshots", "proxy FID/KID (+ class agreement) of every "
                           "snapshot of a run, EMA and raw weights (evaluation along training)",
                           [CONFIG, arg("--snapshots", required=True, help="the run's snapshots folder"), MODEL,
                            REFERENCE, CLASSIFIER, TRAIN_JSON,
                            arg("--guidance", help="guidance.json of sweep-guidance: evaluate at its chosen scale"),
                            TRACKING, OUT, THREADS, SPEED]),
    "probe": ("pra.evaluate.jobs:probe", "linear probing of a trained model (MAE recipe + fast probe)",
              [CONFIG, MODEL, DATA, TRACKING, OUT, THREADS]),
    "gap": ("pra.diagnostics.jobs:gap", "input-distribution gap of a trained model",
            diagnostic(arg("--permutations", type=int, default=200, help="permutations of the MMD tests"))),
    "accumulate": ("pra.diagnostics.jobs:accumulate", "error accumulation along the sequence (hybrid prefixes)",
                   diagnostic(arg("--classifier", help="classifier.pt: class agreement of the completed images "
                                                       "(default: none, agreement skipped)"),
                              arg("--permutations", type=int, default=200,
                                  help="within-image swaps of the permutation test of each excess"))),
    "approximate": ("pra.diagnostics.jobs:approximate", "distance of PRA's and its twin's inputs to the anchored "
                    "sequential rollout's, on shared draws (the approximation error)", diagnostic()),
    "ablation": ("pra.ablation:ablation_job", "aggregate one ablation over variants and seeds; MLflow parent + "
                 "children", [CONFIG, ABLATION, RESULTS, TRACKING, OUT]),
    "tune": ("pra.ablation:tune_job", "choose each tuned variant's noise-knob value from its runs on the tuning "
             "seed", [CONFIG, ABLATION, RESULTS, OUT]),
    "check-rerun": ("pra.reproduction:check_rerun_job", "does a rerun's metrics.json agree with a committed one "
                    "within the seed-to-seed spread?",
                    [arg("committed", help="the committed metrics.json"),
                     arg("rerun", help="the rerun's metrics.json (scored with the committed run's classifier)"),
                     arg("--spread", required=True, help="a metrics.json of the same data with several seeds per "
                         "arm (the seed sd of log FID/KID/IS, or of the raw metric)"),
                     arg("--metric", default="fid", help="the metric compared (default: fid)"),
                     arg("--alpha", type=float, default=0.05, help="false-alarm rate when the rerun is no further "
                         "from the committed runs than other seeds would be (half for the runs' bounds, half for the "
                         "shared-shift test)")]),
    "power": ("pra.paired:power_job", "seeds a paired comparison of log FID needs, from a measured seed spread",
              [arg("--spread", required=True, help="a report's metrics.json with several seeds per arm"),
               arg("--metric", default="fid", help="the endpoint (its log is compared)"),
               arg("--alpha", type=float, default=0.05, help="family-wise error rate"),
               arg("--m", type=int, default=3, help="registered comparisons in the family (Bonferroni)"),
               arg("--power", type=float, default=0.8, help="the power each comparison is planned for"),
               arg("--ratios", type=float, nargs="+", default=[1.05, 1.1, 1.15, 1.2, 1.3],
                   help="effects (ratios of the metric) to give the seeds for"),
               arg("--margin", type=float, default=1.15, help="equivalence margin as a ratio"),
               arg("--correlation", type=float, default=0.0, help="between arms across seeds (0 without a pilot "
                   "of 10 or more seeds)"),
               arg("--seeds", type=int, default=8, help="what this many seeds detect"),
               arg("--pool", default="max", choices=["max", "pooled"], help="the largest per-arm sd (conservative) "
                   "or the pooled one"),
               arg("--out", help="write <out>.md and <out>.json")]),
    "study-hash": ("pra.study:study_hash_job", "the hash of the result-determining code a study registers "
                   "(pra.study.RESULT_COMMANDS)", []),
    "block": ("pra.study:block_job", "run one registered block of a study (Snakemake on its runs) and write its "
              "record: block.json and one JSON per run",
              [arg("--study", required=True, help="the study file, e.g. experiments/settle2/study.yaml"),
               arg("--block", required=True, help="the block's id"),
               arg("--cores", type=int, default=2, help="Snakemake's --cores"),
               arg("--classifier", help="score with this feature classifier (a classifier folder from the machine "
                   "that ran the study's first block: evaluate.classifier_dir), not one trained here"),
               arg("--new-classifier", metavar="REASON", help="accept a classifier other than the earlier blocks' "
                   "(recorded with the reason; the analysis prints it)")]),
    "pilot": ("pra.pilot:pilot_job", "a pilot block's estimates (per arm, paired per pair of arms) and the seeds "
              "they imply -> <out>.md and <out>.json",
              [arg("--study", required=True, help="the study file, e.g. experiments/settle2/study.yaml"),
               arg("--block", required=True, help="the pilot block's id"), OUT,
               arg("--m", type=int, default=3, help="confirmatory comparisons the study will register")]),
    "study-report": ("pra.study_analysis:study_report_job", "the registered analysis of a study's measurement "
                     "blocks, once every one is recorded -> <out>.md, <out>.json, <out>_ratios.png",
                     [arg("--study", required=True, help="the study file, e.g. experiments/settle3/study.yaml"), OUT]),
    "report": ("pra.report.build:report_job", "tables and figures from the pipeline's JSON",
               [CONFIG, RESULTS, OUT]),
    "params": ("pra.estimate:params_job", "parameter counts of the experiment's scales as JSON",
               [CONFIG, EXPERIMENT, NUM_CLASSES]),
    "bench": ("pra.bench.jobs:bench_job", "speed/memory ratios measured side by side -> benchmarks/results.{json,md}",
              [CONFIG, arg("--out", default="benchmarks", help="the folder of results.{json,md} (gpu.{json,md} on CUDA)"),
               THREADS, arg("--reps", type=int, default=15, help="CPU: timed repetitions (medians)"),
               arg("--scales", nargs="+", default=["tiny-S", "tiny-L"], help="training-step scales"),
               arg("--sample-scales", nargs="+", default=["tiny-S", "PRA-S"], help="sampling scales (256 tokens)"),
               arg("--sample-ode-steps", type=int, default=16, help="CPU: head ODE steps per token when sampling"),
               arg("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: the GPU benchmark (benchmarks/gpu.{json,md}) when CUDA is available, else the CPU one"),
               arg("--gpu-scales", nargs="+", default=["PRA-S", "PRA-L"], help="GPU: training scales"),
               arg("--gpu-batch", type=int, default=None,
                   help="GPU: training batch per GPU (default: the experiment's, train.batch_size / GPUs)"),
               arg("--gpu-reps", type=int, default=3, help="GPU: timed windows / sampling repetitions (medians)"),
               arg("--gpu-window", type=int, default=10, help="GPU: iterations per timed window (one log flush each)"),
               arg("--gpu-modes", nargs="+", default=["compiled", "fast"], choices=["eager", "compiled", "fast"],
                   help="GPU: training modes timed side by side"),
               arg("--gpu-sample-scales", nargs="+", default=["PRA-S", "PRA-L"], help="GPU: sampling scales"),
               arg("--gpu-sample-batches", nargs="+", type=int, default=None,
                   help="GPU: fast-path sampling batches (default: the experiment's sample.batch_size)"),
               arg("--gpu-eager-batch", type=int, default=256,
                   help="GPU: the batch at which the eager fp32 sampler is timed beside the fast path (0: not)"),
               arg("--gpu-profile-sampling", type=int, default=1, choices=[0, 1],
                   help="GPU: also profile one batch of the first sampling scale (head ODE, trunk, decoder shares)"),
               arg("--gpu-sections", nargs="+", default=["training", "sampling", "agreement"],
                   choices=["training", "sampling", "agreement"], help="GPU: sections to run, in this order"),
               arg("--gpu-geometry", default="256,3,16,1000",
                   help="GPU: resolution,channels,patch,classes of the timed models (default: ImageNet-256)"),
               arg("--gpu-ode-steps", type=int, default=50,
                   help="GPU: head ODE steps per token when sampling (Heun, CFG 3 linear: the imagenet256 settings)"),
               arg("--matmul", action="store_true",
                   help="only measure and print this machine's fp32 matmul rate with --threads threads (seconds; "
                        "writes nothing)"),
               arg("--gpu-dry-run", action="store_true",
                   help="GPU: run the GPU benchmark's code on the CPU (checks its logic; the timings mean nothing)"),
               arg("--gpu-keep", action="store_true",
                   help="GPU: keep the other sections of an existing gpu.json measured on the same card and torch")]),
    "bench-precision": ("pra.bench.precision:bench_precision_job",
                        "bf16 vs fp32 sampling weights on a trained model, beside the seed spread -> OUT.{json,md,png}",
                        [arg("--model", required=True, help="a trained model.pt"),
                         arg("--classifier", required=True, help="the evaluation classifier (train-classifier's .pt)"),
                         arg("--reference", default=None, help="reference statistics (reference's .npz): adds FID"),
                         arg("--out", default="benchmarks/precision", help="writes <out>.json, <out>.md, <out>.png"),
                         arg("--per-class", type=int, default=20, help="samples per class and precision"),
                         arg("--cfg-scale", type=float, default=None, help="default: the model's sample.cfg_scale"),
                         arg("--seed", type=int, default=0, help="sampling seed (the same draws for both precisions)"),
                         arg("--batch-size", type=int, default=100, help="samples per batch"),
                         arg("--device", default="auto", help="auto: CUDA when available, else cpu"), THREADS]),
    "bench-prepare": ("pra.bench.preparation:bench_prepare_job", "preprocessing vs bare PIL -> benchmarks/prepare.{json,md}",
                      [arg("--out", default="benchmarks", help="the folder of prepare.{json,md}"),
                       arg("--images", type=int, default=600, help="synthetic JPEGs prepared"),
                       arg("--resolution", type=int, default=256, help="the crop's side in pixels"),
                       arg("--workers", type=int, default=2, help="preparation worker processes")]),
    "estimate": ("pra.estimate:estimate_job", "training FLOPs and GPU-hours of an experiment's scales (estimate)",
                 [CONFIG, EXPERIMENT, NUM_CLASSES,
                  arg("--peak-tflops", type=float, help="the card to estimate for, its bf16 dense peak; given, "
                      "the benchmark's MFUs (of its own card) are not used; default: the benchmark's card when its "
                      "MFUs are used (no --mfu), else 312 (A100, assumed)"),
                  arg("--mfu", type=float, help="assumed MFU; default: the GPU benchmark's measured MFU of each "
                      "scale it measured, else 0.4"),
                  arg("--gpu-bench", default="benchmarks/gpu.json", help="GPU benchmark results (if present)"),
                  arg("--intra-gbps", type=float, default=150.0, help="all-reduce model: GB/s per GPU within a node "
                      "(assumed)"),
                  arg("--inter-gbps", type=float, default=25.0, help="all-reduce model: GB/s per GPU across nodes "
                      "(assumed)")]),
    "scales": ("pra.estimate:scales_job", "the scale registry", []),
    "launch": ("pra.launch:launch_job", "multi-node training inside a Slurm allocation: srun + one torchrun per node",
               [arg("--nodes", type=int, required=True, help="nodes of the allocation (one torchrun each)"),
                arg("--procs-per-node", type=int, default=1, help="processes per node (its GPUs; 1 on CPU nodes)"),
                arg("args", nargs=argparse.REMAINDER,
                    help="-- <what torchrun runs on every process, e.g. -m pra train ...>")]),
    "release-lock": ("pra.locks:release_job", "unlock the Snakemake working directory if no Snakemake runs in it "
                     "(after a hard kill)", [arg("--directory", default=".", help="the Snakemake working directory")]),
    "schema": ("pra.config:schema_job", "print the config JSON schema",
               [arg("--out", help="write it to this file instead (workflow/schemas/config.schema.json)")]),
    "config": ("pra.config:config_job", "print the resolved config",
               [CONFIG, arg("--reconstructions", action="store_true",
                            help="list the values not published by the paper")]),
}


def _json_arg(flag: str, text: str):
    from pra.config import ConfigError

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag}: not JSON ({e})") from None


def experiment_config(args):
    """The validated config of --config-json (a rule's subset of a config the Snakefile validated whole),
    --config YAML files (later ones override) or the defaults."""
    from pra import config as C

    if getattr(args, "config_json", None):
        passed = _json_arg("--config-json", args.config_json)
        if not isinstance(passed, dict):
            raise C.ConfigError("--config-json: the top level must be a mapping")
        if args.command in READS:
            missing = missing_keys(passed, reads(args.command))
            if missing:
                raise C.ConfigError(f"--config-json of `{args.command}` lacks config key(s) {missing} that its job "
                                    f"reads; pass them (a Snakemake rule passes READS[{args.command!r}])")
        cfg = C.from_dict(passed, cross_checks=False)
    elif getattr(args, "config", None):
        from pra.model.scales import SCALES

        cfg = C.load(*args.config, scales=SCALES)
    else:
        cfg = C.ExperimentConfig()
    if getattr(args, "speed_json", None):  # the execution settings (pra.jobconfig.EXECUTION)
        passed = _json_arg("--speed-json", args.speed_json)
        unknown = sorted(set(passed) - {"speed", "train"})
        if unknown:
            raise C.ConfigError(f"--speed-json: only the execution settings (speed, {', '.join(TRAIN_EXECUTION)}); "
                                f"got {unknown}")
        ex = C.from_dict(passed, cross_checks=False)
        train = {k: getattr(ex.train, k) for k in passed.get("train", {})}
        bad = [f"train.{k}" for k in train if f"train.{k}" not in TRAIN_EXECUTION]
        if bad:
            raise C.ConfigError(f"--speed-json: {bad} decide results, not only execution: pass them in --config-json")
        cfg = cfg.replace(speed=ex.speed, **({"train": train} if train else {}))
    return cfg


class DefaultsHelp(argparse.HelpFormatter):
    """Help that ends with the option's default, where it has one that its text does not already give."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings
                or action.required):
            return text
        return f"{text} (default: %(default)s)"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pra", description=__doc__.split("\n")[0],
                                 epilog="python -m pra torchrun <torchrun's arguments>: torchrun whose agent survives "
                                        "Slurm's USR1 warning (what the multi-GPU training rules run)")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (job, help, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, formatter_class=DefaultsHelp)
        p.set_defaults(job=job, takes_config=CONFIG in arguments)
        for a in arguments:
            if a is CONFIG:
                p.add_argument("--config", nargs="+", metavar="YAML", help="experiment YAML file(s), later ones "
                               "override")
                p.add_argument("--config-json", help="the experiment config as JSON (what the Snakemake rules pass)")
            else:
                p.add_argument(*a[0], **a[1])
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["torchrun"]:  # torchrun whose agent survives Slurm's USR1 warning (pra/agent.py)
        from pra.agent import run

        run(argv[1:])
        return 0
    args = parser().parse_args(argv)
    from pra.config import ConfigError
    from pra.stop import Stop

    try:
        args.cfg = experiment_config(args) if args.takes_config else None
        from pra.codehash import code_hash

        args.code_hash = code_hash(args.command)  # recorded by the jobs in their outputs
        module, function = args.job.split(":")
        getattr(importlib.import_module(module), function)(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except Stop as e:  # preempted: the state is saved, a rerun (Slurm retry) resumes
        print(f"stopped early: {e}", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
