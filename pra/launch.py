"""Multi-node launch inside a Slurm allocation: one torchrun agent per node (started by srun), with one
process per GPU (one on CPU nodes); the agents meet in a c10d rendezvous on the allocation's first node.

`python -m pra launch --nodes N --procs-per-node G -- -m pra train ...` replaces itself (exec) with

    srun --nodes=N --ntasks-per-node=1 --cpus-per-task=C --kill-on-bad-exit=1 \
         python -m pra torchrun --nnodes=N --nproc_per_node=G --rdzv_backend=c10d \
         --rdzv_id=JOBID --rdzv_endpoint=HEAD:PORT -m pra train ...

so Slurm's signals (time limit, preemption) reach srun and the training processes directly
(`pra torchrun` is torchrun with an agent that leaves SIGUSR1 to the trainers: pra/agent.py). The
allocation is read from `scontrol`, because Snakemake's job-step executor hands the job's shell only the
job id of the allocation, not its node list.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Allocation:
    job_id: int
    nodes: list[str]
    cpus: int  # CPUs of the whole allocation

    @property
    def cpus_per_node(self) -> int:
        return max(self.cpus // len(self.nodes), 1)


def scontrol_fields(scontrol_line: str) -> dict[str, str]:
    """`scontrol show ... -o` output: space-separated Key=Value pairs (values without spaces)."""
    return dict(m.groups() for m in re.finditer(r"(\S+?)=(\S*)", scontrol_line))


def _scontrol(*args: str) -> str:
    try:
        return subprocess.run(["scontrol", *args], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise LaunchError("scontrol not found: multi-node training runs inside a Slurm allocation "
                          "(snakemake --profile slurm)") from None
    except subprocess.CalledProcessError as e:
        raise LaunchError(f"scontrol {' '.join(args)} failed: {e.stderr.strip()}") from None


def allocation(job_id: int) -> Allocation:
    job = scontrol_fields(_scontrol("show", "job", "-o", str(job_id)))
    nodelist = job.get("NodeList", "")
    if not nodelist or nodelist == "(null)":
        raise LaunchError(f"Slurm job {job_id} has no nodes (state {job.get('JobState', '?')})")
    nodes = _scontrol("show", "hostnames", nodelist).split()
    return Allocation(job_id, nodes, int(job.get("NumCPUs", "1")))


def node_address(node: str) -> str:
    """The address Slurm itself uses to reach a node (NodeAddr; the node name when unset)."""
    addr = scontrol_fields(_scontrol("show", "node", "-o", node)).get("NodeAddr", "")
    return addr or node


def rendezvous_port(job_id: int) -> int:
    """A port derived from the job id: two multi-node jobs that share a head node do not collide."""
    return 20000 + job_id % 20000


def command(alloc: Allocation, nodes: int, procs_per_node: int, head: str, args: list[str],
            python: str = sys.executable) -> list[str]:
    """srun + torchrun; `args` is what torchrun runs on every process (e.g. -m pra train ...)."""
    if nodes > len(alloc.nodes):
        raise LaunchError(f"resources.train_nodes is {nodes} but Slurm job {alloc.job_id} has "
                          f"{len(alloc.nodes)} node(s): {alloc.nodes}")
    return ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={alloc.cpus_per_node}",
            "--kill-on-bad-exit=1",
            python, "-m", "pra", "torchrun", f"--nnodes={nodes}", f"--nproc_per_node={procs_per_node}",
            "--rdzv_backend=c10d", f"--rdzv_id={alloc.job_id}",
            f"--rdzv_endpoint={head}:{rendezvous_port(alloc.job_id)}", *args]


def launch(nodes: int, procs_per_node: int, args: list[str]) -> None:
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        raise LaunchError(f"resources.train_nodes = {nodes} needs a Slurm allocation: run the workflow with "
                          "`snakemake --profile slurm` (SLURM_JOB_ID is not set)")
    alloc = allocation(int(job))
    argv = command(alloc, nodes, procs_per_node, node_address(alloc.nodes[0]), args)
    print("launch:", shlex.join(argv), file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


# ---- the command-line job ----------------------------------------------------------------------
def launch_job(args):
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    if not rest:
        raise SystemExit("python -m pra launch: give what every process runs after --, e.g. -- -m pra train ...")
    try:
        launch(args.nodes, args.procs_per_node, rest)
    except LaunchError as e:
        raise SystemExit(f"launch error: {e}") from None
