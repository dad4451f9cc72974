"""PRA pipeline: prepare -> train (scale x method x seed) -> sample -> evaluate -> report.

    snakemake --cores all all                                   # the default experiment
    snakemake --cores all all --configfile experiments/smoke.yaml
    snakemake --profile slurm all                               # on a Slurm cluster

Every rule is a thin shell around `python -m pra <command>`. Before any job starts, the config files are
read again strictly (a key given twice in one mapping, which YAML would silently drop, is an error), the
config is parsed into the typed config object (a bad key or value stops the run naming the key), and the
result is validated against workflow/schemas/config.schema.json (rendered from the pra.config package).
"""
import dataclasses
import sys

from snakemake.utils import min_version, validate

min_version("9.27")


configfile: "config/config.yaml"


sys.path.insert(0, workflow.basedir)  # this checkout's `pra`, whatever else is installed
from pra.config import ConfigError, from_dict, yamlfile
from pra.model.scales import SCALES

try:
    for path in workflow.configfiles:
        yamlfile.read(path)
    EXP = from_dict(config, scales=SCALES)
except ConfigError as e:
    raise WorkflowError(f"invalid configuration: {e}")
validate(dataclasses.asdict(EXP), "workflow/schemas/config.schema.json")


report: "workflow/report/workflow.rst"


# GPU nodes: the same environment as an Apptainer image (workflow/envs/pra.def), used with
# `--software-deployment-method apptainer` (slurm/profile.yaml shows how)
if EXP.resources.container:

    container: EXP.resources.container


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ablate.smk"
include: "workflow/rules/report.smk"


rule all:
    # the results themselves, not only the reports: a fresh clone has the committed reports/ but no
    # results/, and must rebuild everything
    input:
        for_runs(f"{RUN}/eval.json"),
        [f"{RESULTS}/ablations/{a.name}.json" for a in EXP.ablations],
        REPORT_OUTPUTS,
    default_target: True
