"""Multi-node launch: the srun/torchrun command built from a Slurm allocation, and its errors."""
import subprocess
import sys

import pytest

from pra.launch import Allocation, LaunchError, scontrol_fields, command, rendezvous_port

JOB_LINE = ("JobId=31 JobName=wrap UserId=root(0) GroupId=root(0) JobState=RUNNING Reason=None "
            "NodeList=gpu[003-004] NumNodes=2 NumCPUs=64 NumTasks=2 CPUs/Task=32 "
            "TRES=cpu=64,mem=500G,node=2,billing=64,gres/gpu=16 Comment=rule_train_wildcards_PRA-L")


def test_scontrol_fields_are_parsed():
    f = scontrol_fields(JOB_LINE)
    assert f["NodeList"] == "gpu[003-004]" and f["NumCPUs"] == "64" and f["JobState"] == "RUNNING"
    assert f["TRES"] == "cpu=64,mem=500G,node=2,billing=64,gres/gpu=16"


def test_command_starts_one_agent_per_node_with_a_rendezvous_on_the_head():
    alloc = Allocation(123456, ["gpu003", "gpu004"], 64)
    argv = command(alloc, 2, 8, "10.0.0.3", ["-m", "pra", "train", "--seed", "0"], python="/env/bin/python")
    assert argv[:5] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=32", "--kill-on-bad-exit=1"]
    assert argv[5:9] == ["/env/bin/python", "-m", "pra", "torchrun"]
    assert "--nnodes=2" in argv and "--nproc_per_node=8" in argv and "--rdzv_backend=c10d" in argv
    assert "--rdzv_id=123456" in argv and f"--rdzv_endpoint=10.0.0.3:{rendezvous_port(123456)}" in argv
    assert argv[-5:] == ["-m", "pra", "train", "--seed", "0"]
    assert 20000 <= rendezvous_port(123456) < 40000 and rendezvous_port(1) != rendezvous_port(2)


def test_more_nodes_than_allocated_is_refused():
    with pytest.raises(LaunchError, match="train_nodes is 4 but Slurm job 7 has 2 node"):
        command(Allocation(7, ["a", "b"], 4), 4, 1, "a", ["-m", "pra", "train"])


def test_outside_slurm_the_launcher_says_what_is_needed():
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SLURM_")}
    p = subprocess.run([sys.executable, "-m", "pra", "launch", "--nodes", "2", "--", "-m", "pra", "train"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "train_nodes = 2 needs a Slurm allocation" in p.stderr and "snakemake --profile slurm" in p.stderr
