"""The code a command's job runs, as one hash: results follow code.

The modules of a job are found statically: its entry module (`pra.__main__.COMMANDS`), the `pra` modules
imported at that module's top level and inside the job function, then every `pra` module those import
(anywhere in the file), transitively, with the packages' `__init__` files. The hash covers their sources,
the command's row of the command table (its arguments and the config keys it reads) and the code that
turns --config-json into the job's config. `pra/__main__.py` itself is not hashed whole, so that adding a
command reruns nothing.

The Snakemake rules carry a job's hash as a param: editing a module reruns exactly the jobs whose code
includes it (and what depends on their outputs), and `dvc repro`, which runs Snakemake, therefore never
records new code beside results of the old. Jobs write their hash into their outputs' JSON.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
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


def closure(roots: list[str]) -> list[Path]:
    """Every `pra` module file reachable from the module names `roots`, sorted; pra/__main__.py excluded."""
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
    seen.discard(PACKAGE / "__main__.py")
    return sorted(seen)


def job_modules(command: str) -> list[Path]:
    """The module files the job of `command` runs: its entry module (and the packages above it), then the
    closure of what the entry module imports at its top level and what the job function, and the module's
    functions it calls, import. Other functions of the entry module (other jobs) contribute their source
    only, not their imports."""
    from pra.__main__ import COMMANDS

    module, function = COMMANDS[command][0].split(":")
    tree = _tree(module_file(module))
    roots = list(_packages(module))
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    used, todo = set(), [function]
    while todo:  # the job function and the module's functions and classes it uses, transitively
        name = todo.pop()
        if name in used or name not in defs:
            continue
        used.add(name)
        roots += imported_modules(defs[name])
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name)]
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            roots += imported_modules(node)
    return sorted(set(closure(roots)) | {module_file(module)})


def command_spec(command: str) -> str:
    """The command's row of the table (arguments, reads) and the code that builds its config, as text."""
    import pra.__main__ as M

    parts = [command, repr(M.COMMANDS[command]), repr(M.READS.get(command))]
    parts += [inspect.getsource(f) for f in (M.experiment_config, M.reads, M.missing_keys)]
    return "\n".join(parts)


@lru_cache(maxsize=None)
def code_hash(command: str) -> str:
    """sha256 (first 16 hex digits) of the job's module sources (paths relative to the repository) and its
    command spec."""
    h = hashlib.sha256(command_spec(command).encode())
    for f in job_modules(command):
        h.update(f"\n--- {f.relative_to(ROOT).as_posix()}\n".encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
