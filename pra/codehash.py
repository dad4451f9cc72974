"""The code a command's job runs, as one hash: results follow code.

The modules of a job are found statically: its entry module (`pra.__main__.COMMANDS`), the `pra` modules
imported at that module's top level and inside the job function (and the entry module's functions it calls),
then every `pra` module those import (anywhere in the file), transitively, with the packages' `__init__`
files. The hash covers, for each of those modules, its syntax tree without docstrings (so comments and
docstrings do not count; string literals such as option help texts do), of the entry module only its
top-level statements and the definitions the job uses, the command's row of the command table, its entries
in pra.jobconfig (READS, EXECUTION) and the code that turns the command line into the job's config. The two
table modules (`pra/__main__.py`, `pra/jobconfig.py`) are represented by the command's own rows only, so that
adding a command or changing another command's keys reruns nothing.

The Snakemake rules carry a job's hash as a param: editing a module reruns the jobs whose code includes it (and
what depends on their outputs), and `dvc repro`, which runs Snakemake, therefore never records new code beside
results of the old. Jobs write their hash into their outputs' JSON. Static analysis misses imports made by
strings (importlib) and files read at run time that are not Python: neither is used by the jobs.
"""
from __future__ import annotations

import ast
import copy
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # .../pra
ROOT = PACKAGE.parent


def module_file(name: str) -> Path | None:
    """The source file of a `pra` module name, or None if it is not one."""
    if name != "pra" and not name.startswith("pra."):
        return None
    rel = Path(*name.split("."))
    for cand in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _packages(name: str) -> list[str]:
    """The packages whose __init__ runs when `name` is imported: pra, pra.x, ... (name excluded)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(node: ast.AST) -> list[str]:
    """Module names a node's import statements (anywhere below it) may load."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.append(n.module)
            out += [f"{n.module}.{a.name}" for a in n.names]  # `from pra import speed`: a submodule
    return [m for m in out if module_file(m) is not None]


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


TABLES = ("__main__.py", "jobconfig.py")  # represented by the command's rows (command_spec), not whole


def closure(roots: list[str]) -> list[Path]:
    """Every `pra` module file reachable from the module names `roots`, sorted; the table modules excluded."""
    seen: set[Path] = set()
    todo = [m for r in roots for m in (*_packages(r), r)]
    while todo:
        name = todo.pop()
        f = module_file(name)
        if f is None or f in seen:
            continue
        seen.add(f)
        for m in imported_modules(_tree(f)):
            todo += [*_packages(m), m]
    for name in TABLES:
        seen.discard(PACKAGE / name)
    return sorted(seen)


def _entry(command: str) -> tuple[str, str, ast.Module, set[str]]:
    """(module, function, its tree, the names of the module's definitions the job uses, transitively)."""
    from pra.__main__ import COMMANDS

    module, function = COMMANDS[command][0].split(":")
    tree = _tree(module_file(module))
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    used, todo = set(), [function]
    while todo:  # the job function and the module's functions and classes it uses
        name = todo.pop()
        if name in used or name not in defs:
            continue
        used.add(name)
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name)]
    return module, function, tree, used


def job_modules(command: str) -> list[Path]:
    """The module files the job of `command` runs: its entry module (and the packages above it), then the
    closure of what the entry module imports at its top level and what the job function, and the module's
    functions it calls, import. Other functions of the entry module (other jobs) take no part."""
    module, _, tree, used = _entry(command)
    roots = list(_packages(module))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or \
                (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in used):
            roots += imported_modules(node)
    return sorted(set(closure(roots)) | {module_file(module)})


def _without_docstrings(node: ast.AST) -> ast.AST:
    node = copy.deepcopy(node)
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and \
                isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]
    return node


def normalised(node: ast.AST) -> str:
    """The syntax tree of a module or definition without docstrings (comments are not in it)."""
    return ast.dump(_without_docstrings(node), include_attributes=False)


def command_spec(command: str) -> str:
    """The command's row of the command table, its config keys (pra.jobconfig) and the code that builds its
    config from the command line, as text."""
    import pra.__main__ as M
    import pra.jobconfig as J

    parts = [command, repr(M.COMMANDS[command]), repr(J.READS.get(command)), repr(J.EXECUTION.get(command))]
    for module, names in (("pra.__main__", ("experiment_config", "main", "parser")),
                          ("pra.jobconfig", ("reads", "missing_keys"))):
        defs = {n.name: n for n in _tree(module_file(module)).body if isinstance(n, ast.FunctionDef)}
        parts += [normalised(defs[name]) for name in names]  # from the files, whatever is patched at run time
    return "\n".join(parts)


@lru_cache(maxsize=None)
def code_hash(command: str) -> str:
    """sha256 (first 16 hex digits) of the job's code: the normalised tree of every module it runs (of its entry
    module: the top-level statements and the definitions the job uses) and its command spec."""
    module, _, tree, used = _entry(command)
    entry = module_file(module)
    h = hashlib.sha256(command_spec(command).encode())
    for f in job_modules(command):
        if f == entry:
            body = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef)) or n.name in used]
            text = normalised(ast.Module(body=body, type_ignores=[]))
        else:
            text = normalised(_tree(f))
        h.update(f"\n--- {f.relative_to(ROOT).as_posix()}\n".encode())
        h.update(text.encode())
    return h.hexdigest()[:16]
