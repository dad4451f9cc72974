"""Snakemake's working-directory lock after a hard kill: released only when its owner is provably gone.

A SIGKILLed Snakemake leaves `.snakemake/locks/` behind, and the next run refuses to start until
`snakemake --unlock`. `python -m pra release-lock` (what `make run` calls first) unlocks only if the folder has
locks and no live process on this machine is a Snakemake running in that folder (judged from /proc: its
command line names snakemake, its working directory is the folder). Where /proc cannot tell (another OS,
another user's processes hidden), it does nothing and says so: the manual `snakemake --unlock`
(docs/configuration.md, "After a crash") is the way then. A Snakemake on another machine sharing the folder is
invisible here: do not use this on a shared file system while a run may be active elsewhere.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def lock_files(workdir: Path) -> list[Path]:
    locks = workdir / ".snakemake" / "locks"
    return sorted(locks.glob("*")) if locks.is_dir() else []


def snakemake_processes(workdir: Path) -> list[int] | None:
    """PIDs of Snakemake processes (and `python -m pra` jobs) whose working directory is `workdir`; None if
    /proc cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    target, found = workdir.resolve(), []
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # ended meanwhile, or a kernel thread
        names = [Path(c.decode(errors="replace")).name for c in cmd[:3]]
        snakemake = any(n.startswith("snakemake") for n in names) or (b"-m" in cmd[:3] and b"snakemake" in cmd[:4])
        job = b"-m" in cmd[:3] and b"pra" in cmd[:4]  # a job of the run (python -m pra ...) still alive
        if not (snakemake or job):
            continue
        try:
            cwd = Path(os.readlink(d / "cwd"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            return None  # a Snakemake whose folder we cannot see might be the owner
        if cwd == target:
            found.append(int(d.name))
    return found


def release(workdir: str | Path = ".") -> str:
    """Unlock `workdir` if it is locked by a Snakemake that no longer runs; returns what was done."""
    workdir = Path(workdir)
    checkout = workdir if (workdir / "Snakefile").exists() else Path(__file__).resolve().parents[1]
    extra = [] if (workdir / "config" / "config.yaml").exists() else \
        ["--configfile", str(checkout / "config" / "config.yaml")]  # a folder outside the checkout (--directory)
    locks = lock_files(workdir)
    if not locks:
        return "not locked"
    owners = snakemake_processes(workdir)
    if owners is None:
        return "locked; cannot tell whether its owner runs: run `snakemake --unlock` if none does"
    if owners:
        return f"locked by running Snakemake process(es) {owners}: left alone"
    cmd = ["snakemake", "--unlock", "--cores", "1", "--snakefile", str(checkout / "Snakefile"), "--directory",
           str(workdir), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return f"released a stale lock ({len(locks)} lock file(s); no Snakemake runs in {workdir.resolve()})"


def release_job(args) -> None:
    if not Path(args.directory).is_dir():
        sys.exit(f"release-lock: {args.directory}: no such directory")
    print(release(args.directory), file=sys.stderr)
