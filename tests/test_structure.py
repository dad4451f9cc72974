"""The package's structure: imports go one way (inference never imports training), no import cycles, no
private names across modules."""
import ast

import pytest

from pra.codehash import ROOT, imported_modules, closure, module_file

PACKAGE = ROOT / "pra"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def name_of(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def graph():
    """module -> the pra modules it imports anywhere in its file (packages' __init__ not counted as edges)."""
    out = {}
    for p in MODULES:
        deps = {module_file(m) for m in imported_modules(ast.parse(p.read_text()))} - {None, p}
        out[p] = {d for d in deps if d.name != "__init__.py" or d.parent != p.parent}
    return out


@pytest.mark.parametrize("module", ["pra.sample", "pra.evaluate.jobs", "pra.diagnostics.jobs", "pra.rollout",
                                    "pra.checkpoint"])
def test_inference_never_imports_training(module):
    files = {f.relative_to(ROOT).as_posix() for f in closure([module])}
    assert not files & {"pra/train.py", "pra/step.py", "pra/objective.py", "pra/optim.py"}, module


def test_benchmarks_time_what_the_jobs_run():
    """One step (pra.step) for the training job, the benchmarks and the estimate; the GPU benchmark times the
    training job's own iteration around it (pra.train.Iteration), the estimate counts the step alone."""
    files = lambda roots: {f.relative_to(ROOT).as_posix() for f in closure(roots)}  # noqa: E731
    estimate, gpu = files(["pra.estimate"]), files(["pra.bench.gpu"])
    assert "pra/step.py" in estimate and "pra/train.py" not in estimate
    assert {"pra/step.py", "pra/train.py"} <= gpu
    assert "Iteration(" in (ROOT / "pra/bench/common.py").read_text()


def test_no_import_cycles():
    g = graph()
    state = {}

    def visit(p, stack):
        state[p] = "open"
        for d in g.get(p, ()):
            if state.get(d) == "open":
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError(" -> ".join(name_of(x) for x in cycle))
            if d not in state:
                visit(d, stack + [d])
        state[p] = "done"

    for p in g:
        if p not in state:
            visit(p, [p])


def test_no_private_names_across_modules():
    found = []
    for p in MODULES + sorted((ROOT / "tests").glob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("pra"):
                found += [f"{p.relative_to(ROOT)}: {n.module}.{a.name}" for a in n.names
                          if a.name.startswith("_") and a.name != "__version__"]
    assert not found, found


def test_every_command_option_says_what_it_is():
    """`python -m pra <command> --help` documents every option (a user reads the CLI before the code), shows the
    defaults, and the top-level help names the torchrun wrapper that the multi-GPU rules call."""
    import argparse

    from pra.__main__ import parser

    ap = parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {a.option_strings[0] if a.option_strings else a.dest}" for name, p in sub.choices.items()
            for a in p._actions if (not a.option_strings or a.option_strings[0] != "-h") and not a.help]
    assert bare == []
    for name, p in sub.choices.items():  # every command's help renders (a % in a help text would break it)
        assert name in p.format_help() or p.description
    assert "(default: fid)" in sub.choices["power"].format_help()
    assert "default: None" not in sub.choices["power"].format_help()
    assert "python -m pra torchrun" in ap.format_help()
