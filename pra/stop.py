"""Stopping a job early on request: Slurm's time-limit and preemption signals, caught so that the job
writes a resumable checkpoint and exits; a rerun continues from it."""
from __future__ import annotations

import signal
import threading


class Stop(Exception):
    """Training stopped early (preemption signal, or `stop_after`) after writing a resumable checkpoint."""


class StopSignals:
    """SIGTERM and SIGUSR1 (Slurm's time-limit and preemption signals) request a checkpoint and exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
