"""torchrun, with its agent deaf to SIGUSR1.

Slurm's early warning (`--signal=USR1@<seconds>` without `B:`) reaches every process of the job step:
the torchrun agent as well as the training processes. torchrun handles only TERM, INT, HUP and QUIT, so
USR1's default action would kill the agent, and srun would then tear the step down while the trainers are
still writing `state.pt`. The agent ignores USR1; each trainer installs its own handler (pra/train.py),
checkpoints and exits 143, and the agent reports the failure so that the rule's retry resumes.
"""
from __future__ import annotations

import signal
import sys


def run(argv: list[str]) -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    from torch.distributed.run import main

    sys.argv = ["torchrun", *argv]
    main()
