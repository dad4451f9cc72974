"""The GPU nodes' environment: the container recipes (workflow/envs/Dockerfile, workflow/envs/pra.def) build
workflow/envs/pra.yaml, whose pins are the package's, in the layout `snakemake --containerize` writes for it.
Building an image needs a container runtime with registry access, and running the jobs in it Apptainer:
neither is checked here (docs/cluster.md says so)."""
import re
import subprocess

import yaml

from conftest import ROOT

ENVS = ROOT / "workflow/envs"


def _pyproject_pins():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    return set(re.findall(r'"([^"]+)"', block))


def test_the_environment_pins_what_the_package_pins():
    env = yaml.safe_load((ENVS / "pra.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    tools = {p for p in _pyproject_pins() if p.startswith(("snakemake", "dvc"))}  # the submit host's, not the jobs'
    assert set(pip) == _pyproject_pins() - tools, set(pip) ^ (_pyproject_pins() - tools)


def test_the_recipes_carry_the_environment_hash_snakemake_computes():
    p = subprocess.run(["snakemake", "--containerize"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    # without conda on this machine snakemake stops after writing the label; the hash is all we compare
    want = re.search(r'conda_env_hash="([0-9a-f]{64})"', p.stdout)
    assert want, p.stdout + p.stderr
    h = want.group(1)
    docker = (ENVS / "Dockerfile").read_text()
    apptainer = (ENVS / "pra.def").read_text()
    for text in (docker, apptainer):
        assert text.count(h) >= 4, "stale environment hash: regenerate with `snakemake --containerize`"
        assert "workflow/envs/pra.yaml" in text


def test_the_recipes_parse():
    instructions = {"FROM", "LABEL", "RUN", "COPY", "ENV", "ARG", "WORKDIR", "ENTRYPOINT", "CMD"}
    lines = (ENVS / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert body[0].startswith("FROM ") and all(ln.split()[0] in instructions for ln in body), body
    text = (ENVS / "pra.def").read_text()
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)$", text, re.M))
    assert header == {"Bootstrap": "docker", "From": body[0].split()[1]}
    sections = re.findall(r"^%(\w+)", text, re.M)
    assert sections == ["files", "post", "environment", "labels"]


def test_the_snakefile_hands_the_configured_image_to_snakemake(tmp_path):
    """resources.container is validated config and becomes the workflow's global container directive (what
    --sdm apptainer runs every job in; the run itself needs Apptainer, absent here)."""
    from pra.config import load

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"resources": {"container": "docker://example.org/pra:1"}}))
    assert load(cfg).resources.container == "docker://example.org/pra:1"
    snakefile = (ROOT / "Snakefile").read_text()
    assert re.search(r"^if EXP\.resources\.container:\n\n    container: EXP\.resources\.container$", snakefile, re.M)
