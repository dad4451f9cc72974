"""The README and the docs: short, their links and named paths resolve, the two commands are the Makefile's,
the README quotes no measured number (results live in reports/ and benchmarks/, generated)."""
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), target
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), (doc.name, target)


def test_two_commands_and_ci_use_them():
    block = README.split("## Two commands", 1)[1].split("##", 1)[0]
    assert "make run" in block and "make test" in block
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: ", make, re.M) and re.search(r"^test: ", make, re.M)
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("make test")


def test_short_and_free_of_measured_numbers():
    assert len(README.splitlines()) <= 60
    # every number in the README is a name, a version or a size of the setting, never a measurement
    allowed = {"2606.27978", "256x256", "3.10", "2"}
    prose = re.sub(r"`[^`]*`|\([^)]*\)|\[[^\]]*\]", "", README)  # commands, paths and link texts aside
    numbers = set(re.findall(r"\d+(?:[.x]\d+)*", prose))
    assert numbers <= allowed, numbers - allowed


def test_the_paths_the_docs_name_exist():
    """Every repository path a doc names in code style (`pra/...`, `tests/...`, ...) is there."""
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for p in re.findall(r"`((?:pra|tests|workflow|experiments|config|benchmarks|slurm|profiles)/[\w./-]*)`",
                            doc.read_text()):
            assert (ROOT / p).exists(), (doc.name, p)


def test_every_method_is_complete_where_docs_extending_says():
    """A method in METHODS has its row in pra/inputs.py's table, a colour in the figures and a mention in
    docs/method.md (the schema and one training step per method: test_config, test_model)."""
    from pra.config import METHODS
    import pra.inputs
    from pra.report.figures import METHOD_COLORS

    table = pra.inputs.__doc__
    method_md = (ROOT / "docs/method.md").read_text()
    for m in METHODS:
        assert re.search(rf"^\| {m} +\|", table, re.M), f"{m}: no row in pra/inputs.py's table"
        assert m in METHOD_COLORS, f"{m}: no colour in pra/report/figures.py METHOD_COLORS"
        assert f"`{m}`" in method_md, f"{m}: not named (`{m}`) in docs/method.md"
