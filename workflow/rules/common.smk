import os

# Paths of every artifact are functions of (experiment, scale, method, seed).
RESULTS = f"results/{EXP.name}"
DATA = f"{RESULTS}/data"
MANIFEST = f"{DATA}/manifest.json"  # written last by prepare: the data folder is complete
RUN = f"{RESULTS}/runs/{{scale}}/{{method}}/s{{seed}}"
REPORTS = EXP.reports_dir


wildcard_constraints:
    scale=r"[A-Za-z0-9_.-]+",
    method=r"[a-z_]+",
    seed=r"\d+",
    shard=r"\d+",


# The software of every rule: the dependencies come from this environment (or the activated venv),
# the `pra` package from this repository (put first on PYTHONPATH by the shell prefix below), so jobs
# always run the checked-out code.
ENV = "../envs/pra.yaml"
shell.prefix('export PYTHONPATH="' + workflow.basedir + '${{PYTHONPATH:+:$PYTHONPATH}}"; ')


def out_dir(output_file):
    """params helper: the folder of an output file."""
    return lambda wildcards, output: os.path.dirname(output[output_file])


def cfg_json(*keys):
    """The config keys a rule's command reads; passed as params so that only they trigger reruns."""
    return EXP.subset_json(*keys)


def runs():
    return [dict(scale=s, method=m, seed=r) for s in EXP.scales for m in EXP.methods for r in EXP.seeds]


# Feature space of the sample metrics: Inception (local weights) when evaluate.inception_weights is set,
# otherwise the classifier trained on this experiment's data.
USE_CLASSIFIER = not EXP.evaluate.inception_weights
CLASSIFIER = f"{RESULTS}/classifier/classifier.pt"
REFERENCE = f"{RESULTS}/reference/reference.npz"


def classifier_input(wildcards):
    return CLASSIFIER if USE_CLASSIFIER else []


def classifier_flag(wildcards, input):
    return f"--classifier {input.classifier}" if input.classifier else ""
