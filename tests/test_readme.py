"""The README: short, its links resolve, its two commands are the Makefile's, and it quotes no measured
number (results live in reports/ and benchmarks/, generated)."""
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
